"""Private routes from the fleet's subnets to the AWS services its instances call, instead of a NAT gateway.

Fleet instances have no public IPs, yet each one at boot logs in to ECR, pulls the image (its
layers live in S3), installs Docker from the Amazon Linux repositories (also S3) and ships logs
to CloudWatch. Interface endpoints for ECR and Logs plus a free S3 gateway endpoint cover exactly
that, for less than one NAT gateway per zone would cost, and leave the instances no path to the
internet at all. bench/capacity.md has the arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from infra.tags import named

# What the boot script and the awslogs driver call.
SERVING_SERVICES = ("ecr.api", "ecr.dkr", "logs")
# What the SSM agent needs for `aws ssm start-session`; optional, since each costs per zone and hour.
SESSION_MANAGER_SERVICES = ("ssm", "ssmmessages", "ec2messages")


@dataclass
class ServiceEndpointsArgs:
    """Arguments for ServiceEndpoints.

    Attributes:
        vpc_id: The VPC.
        subnet_ids: One subnet per zone the instances run in; each interface endpoint gets a
            network interface in every one, so losing a zone loses none of the others' routes.
        route_table_id: The subnets' route table, for the S3 gateway endpoint's route.
        client_group_id: The instances' security group, the only source the endpoints admit.
        region: The region, for the endpoint service names.
        session_manager: Also add the Session Manager endpoints.
        tags: Tags for every resource.
    """

    vpc_id: pulumi.Input[str]
    subnet_ids: list[pulumi.Input[str]]
    route_table_id: pulumi.Input[str]
    client_group_id: pulumi.Input[str]
    region: str
    session_manager: bool
    tags: dict[str, str]


def interface_services(session_manager: bool) -> tuple[str, ...]:
    """The interface endpoints to make (the S3 gateway one is always there besides)."""
    return SERVING_SERVICES + (SESSION_MANAGER_SERVICES if session_manager else ())


class ServiceEndpoints(pulumi.ComponentResource):
    """Interface endpoints with private DNS, their security group, and the S3 gateway endpoint."""

    def __init__(
        self, name: str, args: ServiceEndpointsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cali:aws:ServiceEndpoints", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        tags = partial(named, args.tags, name)

        group = aws.ec2.SecurityGroup(
            f"{name}-endpoints-sg",
            description="cali-housing VPC endpoints: HTTPS from the fleet instances only",
            vpc_id=args.vpc_id,
            ingress=[
                {
                    "description": "https from the instances",
                    "protocol": "tcp",
                    "from_port": 443,
                    "to_port": 443,
                    "security_groups": [args.client_group_id],
                }
            ],
            # Endpoints only answer; they never open connections of their own.
            egress=[],
            tags=tags("endpoints-sg"),
            opts=child,
        )
        self.endpoints: list[aws.ec2.VpcEndpoint] = []
        for service in interface_services(args.session_manager):
            suffix = service.replace(".", "-")
            self.endpoints.append(
                aws.ec2.VpcEndpoint(
                    f"{name}-{suffix}",
                    vpc_id=args.vpc_id,
                    service_name=f"com.amazonaws.{args.region}.{service}",
                    vpc_endpoint_type="Interface",
                    subnet_ids=args.subnet_ids,
                    security_group_ids=[group.id],
                    # The public names (api.ecr.<region>.amazonaws.com, ...) resolve to the endpoint
                    # inside the VPC, so the boot script and Docker need no endpoint URLs.
                    private_dns_enabled=True,
                    tags=tags(suffix),
                    opts=child,
                )
            )
        # Gateway endpoints cost nothing: image layers and the Amazon Linux repositories (both S3)
        # travel over it instead of a NAT gateway billed per gigabyte.
        self.endpoints.append(
            aws.ec2.VpcEndpoint(
                f"{name}-s3",
                vpc_id=args.vpc_id,
                service_name=f"com.amazonaws.{args.region}.s3",
                vpc_endpoint_type="Gateway",
                route_table_ids=[args.route_table_id],
                tags=tags("s3"),
                opts=child,
            )
        )
        self.endpoint_ids: list[pulumi.Output[str]] = [e.id for e in self.endpoints]
        self.register_outputs({"endpoint_ids": self.endpoint_ids})
