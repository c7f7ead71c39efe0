"""The network: a VPC of the stack's own with public subnets, and the app's security group.

Its own VPC, not the account's default one: many accounts delete the default VPC, and a stack
that brings its network can be destroyed without touching anything else.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

VPC_CIDR = "10.40.0.0/16"


@dataclass
class NetworkArgs:
    """Arguments for Network.

    Attributes:
        az_count: Public subnets to make, one per availability zone (1 for a single server; a fleet
            behind a load balancer needs at least 2).
        tags: Tags for every resource.
    """

    az_count: int
    tags: dict[str, str]


class Network(pulumi.ComponentResource):
    """VPC, internet gateway, one public subnet per AZ and their route table."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        def tags(suffix: str) -> dict[str, str]:
            return {**args.tags, "Name": f"{name}-{suffix}"}

        zones = aws.get_availability_zones_output(state="available")
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=self.vpc.id, tags=tags("igw"), opts=child)
        routes = aws.ec2.RouteTable(
            f"{name}-public",
            vpc_id=self.vpc.id,
            routes=[{"cidr_block": "0.0.0.0/0", "gateway_id": gateway.id}],
            tags=tags("public"),
            opts=child,
        )
        self.subnets: list[aws.ec2.Subnet] = []
        for index in range(args.az_count):
            subnet = aws.ec2.Subnet(
                f"{name}-public-{index}",
                vpc_id=self.vpc.id,
                cidr_block=f"10.40.{index}.0/24",
                availability_zone=zones.names.apply(lambda names, i=index: names[i]),
                # Off: a server asks for its own public address (see Server); nothing is public by accident.
                map_public_ip_on_launch=False,
                tags=tags(f"public-{index}"),
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{index}", subnet_id=subnet.id, route_table_id=routes.id, opts=child
            )
            self.subnets.append(subnet)
        self.vpc_id: pulumi.Output[str] = self.vpc.id
        self.subnet_ids: list[pulumi.Output[str]] = [s.id for s in self.subnets]
        self.register_outputs({"vpc_id": self.vpc_id, "subnet_ids": self.subnet_ids})


@dataclass
class AppFirewallArgs:
    """Arguments for AppFirewall.

    Attributes:
        vpc_id: The VPC the group belongs to.
        port: The one port the public may reach.
        cidrs: The networks allowed to reach it.
        tags: Tags for the security group.
    """

    vpc_id: pulumi.Input[str]
    port: int
    cidrs: tuple[str, ...]
    tags: dict[str, str]


def ingress_rules(port: int, cidrs: tuple[str, ...]) -> list[dict[str, object]]:
    """The only way in: TCP on the app port from the allowed networks. No SSH: Session Manager instead."""
    return [
        {
            "description": "app",
            "protocol": "tcp",
            "from_port": port,
            "to_port": port,
            "cidr_blocks": list(cidrs),
        }
    ]


# Out only over HTTPS: ECR, S3 (image layers), CloudWatch Logs, SSM and the dnf mirrors all speak
# it. DNS, NTP and instance metadata go to link-local addresses security groups do not filter.
EGRESS_RULES = [
    {
        "description": "https",
        "protocol": "tcp",
        "from_port": 443,
        "to_port": 443,
        "cidr_blocks": ["0.0.0.0/0"],
    }
]


class AppFirewall(pulumi.ComponentResource):
    """The security group in front of the app."""

    def __init__(self, name: str, args: AppFirewallArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:AppFirewall", name, None, opts)
        group = aws.ec2.SecurityGroup(
            f"{name}-sg",
            # Fixed text: AWS cannot change a group's description, so a port in it would replace the group.
            description="cali-housing app server: the app port from the allowed networks only",
            vpc_id=args.vpc_id,
            ingress=ingress_rules(args.port, args.cidrs),
            egress=EGRESS_RULES,
            tags={**args.tags, "Name": f"{name}-sg"},
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.security_group_id: pulumi.Output[str] = group.id
        self.register_outputs({"security_group_id": self.security_group_id})
