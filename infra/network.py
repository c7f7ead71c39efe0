"""The network: a VPC of the stack's own with public subnets, and the app's security group.

Its own VPC, not the account's default one: many accounts delete the default VPC, and a stack
that brings its network can be destroyed without touching anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from infra.config import APP_PORT_RANGES
from infra.logs import FlowLogs, FlowLogsArgs
from infra.tags import RUNNER_ACCESS_TAG, named

VPC_CIDR = "10.40.0.0/16"


@dataclass
class NetworkArgs:
    """Arguments for Network.

    Attributes:
        az_count: Public subnets to make, one per availability zone (1 for a single server; a fleet
            behind a load balancer needs at least 2).
        tags: Tags for every resource.
        flow_logs: Log the VPC's accepted and rejected traffic to CloudWatch Logs (config flowLogs).
    """

    az_count: int
    tags: dict[str, str]
    flow_logs: bool = False


class Network(pulumi.ComponentResource):
    """VPC, internet gateway, one public subnet per AZ and their route table."""

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Network", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        tags = partial(named, args.tags, name)

        zones = aws.get_availability_zones_output(state="available")
        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=VPC_CIDR,
            enable_dns_hostnames=True,
            enable_dns_support=True,
            tags=tags("vpc"),
            opts=child,
        )
        # The VPC's default group admits all traffic between its members and lets everything out; nothing
        # here uses it, but an ENI created without a group would land in it. Managed with no rules,
        # it admits and emits nothing: the provider "immediately removes all ingress and egress
        # rules" when it adopts the group (pulumi_aws ec2/default_security_group.py docstring).
        aws.ec2.DefaultSecurityGroup(
            f"{name}-default-sg",
            vpc_id=self.vpc.id,
            ingress=[],
            egress=[],
            tags=tags("default-sg"),
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
        if args.flow_logs:
            account = aws.get_caller_identity_output().account_id
            FlowLogs(name, FlowLogsArgs(vpc_id=self.vpc.id, account_id=account, tags=args.tags), opts=child)
        self.vpc_id: pulumi.Output[str] = self.vpc.id
        self.subnet_ids: list[pulumi.Output[str]] = [s.id for s in self.subnets]
        # A fleet's S3 gateway endpoint adds its route here: instances without public IPs reach S3.
        self.route_table_id: pulumi.Output[str] = routes.id
        self.register_outputs(
            {"vpc_id": self.vpc_id, "subnet_ids": self.subnet_ids, "route_table_id": self.route_table_id}
        )


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
            tags={**named(args.tags, name, "sg"), **RUNNER_ACCESS_TAG},
            # A change of the rules (appPort, allowedCidrs) is a NEW group, never an edit of the one
            # the running server answers behind: the provider would revoke the old port's rule at
            # once, while the replacement server is still booting. The new group is created first
            # (create-before-delete is the default; the group's name is auto-named, so the two can
            # coexist), the new server boots behind it, the address moves after the gate, and the old
            # group goes at the end of the `up`, after the old server it guards (the engine deletes
            # replaced resources last, dependents first).
            opts=pulumi.ResourceOptions(
                parent=self, replace_on_changes=["ingress"], delete_before_replace=False
            ),
        )
        self.security_group_id: pulumi.Output[str] = group.id
        self.register_outputs({"security_group_id": self.security_group_id})


@dataclass
class FleetFirewallArgs:
    """Arguments for FleetFirewall.

    Attributes:
        vpc_id: The VPC both groups belong to.
        cidrs: The networks allowed to reach the load balancer.
        https: True when the load balancer listens on 443 too (a domain is configured).
        tags: Tags for both groups.
    """

    vpc_id: pulumi.Input[str]
    cidrs: tuple[str, ...]
    https: bool
    tags: dict[str, str]


def load_balancer_ingress(cidrs: tuple[str, ...], https: bool) -> list[dict[str, object]]:
    """80 from the allowed networks; 443 too when an HTTPS listener stands behind it."""
    ports = (80, 443) if https else (80,)
    return [
        {
            "description": f"tcp {port}",
            "protocol": "tcp",
            "from_port": port,
            "to_port": port,
            "cidr_blocks": list(cidrs),
        }
        for port in ports
    ]


def app_port_rules(**source: list[pulumi.Input[str]]) -> list[dict[str, object]]:
    """TCP between the load balancer and the instances on every port appPort may take (not 22).

    Port-independent on purpose: a fleet's appPort change is blue/green (infra/modes.py): a new
    target group and a new Auto Scaling group on the new port come up while the old instances still
    serve on the old one, so both ports must be open at once. An inline rule holds one port, and the
    provider applies a changed rule in place, revoking the old port at the start of the `up`; a
    standalone rule per port would duplicate the inline rule of a stack made by the previous version
    (AWS refuses a duplicate permission). What stays narrow: only the load balancer's group is the
    source, and a load balancer opens connections only to its registered targets' port.

    Args:
        **source: The peer, as a security group rule names it (`cidr_blocks` or `security_groups`).
    """
    return [
        {"description": "app", "protocol": "tcp", "from_port": low, "to_port": high, **source}
        for low, high in APP_PORT_RANGES
    ]


class FleetFirewall(pulumi.ComponentResource):
    """Two security groups: the load balancer's, open to the allowed networks; the instances', open to it."""

    def __init__(
        self, name: str, args: FleetFirewallArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cali:aws:FleetFirewall", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        balancer = aws.ec2.SecurityGroup(
            f"{name}-lb-sg",
            description="cali-housing load balancer: HTTP(S) from the allowed networks",
            vpc_id=args.vpc_id,
            ingress=load_balancer_ingress(args.cidrs, args.https),
            # To the instances only, by VPC range (each group naming the other inline would be a
            # dependency cycle, and standalone rules would hide from the tests), on every port appPort
            # may take: a change of appPort must not touch this group, or the provider would revoke the
            # old port while the old instances still serve (see app_port_rules).
            egress=app_port_rules(cidr_blocks=[VPC_CIDR]),
            tags={**named(args.tags, name, "lb-sg"), **RUNNER_ACCESS_TAG},
            opts=child,
        )
        instances = aws.ec2.SecurityGroup(
            f"{name}-instance-sg",
            description="cali-housing fleet instances: the app port from the load balancer only",
            vpc_id=args.vpc_id,
            # The only way in is through the load balancer: no CIDR here, so not even the VPC reaches it.
            ingress=app_port_rules(security_groups=[balancer.id]),
            egress=EGRESS_RULES,
            tags=named(args.tags, name, "instance-sg"),
            opts=child,
        )
        self.load_balancer_group_id: pulumi.Output[str] = balancer.id
        self.instance_group_id: pulumi.Output[str] = instances.id
        self.register_outputs(
            {
                "load_balancer_group_id": self.load_balancer_group_id,
                "instance_group_id": self.instance_group_id,
            }
        )
