"""The two ways to run the service, composed from the components: `mode: single` and `mode: fleet`.

Plain functions, not components: wrapping the single server's resources in a new parent would change
their URNs, and Pulumi would replace a running stack's server for nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.certificate import TlsCertificate, TlsCertificateArgs
from infra.config import StackSettings
from infra.endpoints import ServiceEndpoints, ServiceEndpointsArgs
from infra.fleet import Fleet, FleetArgs, ScalingArgs
from infra.load_balancer import HttpsArgs, LoadBalancer, LoadBalancerArgs
from infra.logs import AccessLogBucket, AccessLogBucketArgs
from infra.monitoring import Monitoring
from infra.network import AppFirewall, AppFirewallArgs, FleetFirewall, FleetFirewallArgs, Network
from infra.rollout import RolloutWait, RolloutWaitArgs
from infra.server import Server, ServerArgs


@dataclass
class Foundation:
    """What both modes run on.

    Attributes:
        network: The VPC and its public subnets (one per zone the mode needs).
        ami: The AMI to launch.
        user_data: The rendered boot script (it names the image digest).
        instance_profile_name: The instance profile carrying the server role.
        monitoring: The alarms and their topic; a fleet adds its no-healthy-target alarm.
        image: The digest reference the boot script starts (registry/repo@sha256:...): what the
            single server's container must run before it gets the address (infra/readiness.py).
    """

    network: Network
    ami: pulumi.Input[str]
    user_data: pulumi.Input[str]
    instance_profile_name: pulumi.Input[str]
    monitoring: Monitoring
    image: pulumi.Input[str]


def single(settings: StackSettings, base: Foundation) -> dict[str, pulumi.Output[str]]:
    """One server behind an Elastic IP, open on the app port.

    Returns `url`, `public_ip`, `instance_id` (what `aws ssm start-session --target` takes) and
    `ingress_group`.
    """
    tags = settings.tags
    firewall = AppFirewall(
        "cali",
        AppFirewallArgs(
            vpc_id=base.network.vpc_id, port=settings.app_port, cidrs=settings.allowed_cidrs, tags=tags
        ),
    )
    server = Server(
        "cali",
        ServerArgs(
            ami=base.ami,
            ami_pinned=bool(settings.ami),
            instance_type=settings.instance_type,
            subnet_id=base.network.subnet_ids[0],
            security_group_id=firewall.security_group_id,
            instance_profile_name=base.instance_profile_name,
            user_data=base.user_data,
            root_volume_gb=settings.root_volume_gb,
            region=settings.region,
            tags=tags,
            host_port=settings.app_port,
            image=base.image,
            alarm_topic_arn=base.monitoring.topic_arn,
        ),
    )
    port_suffix = "" if settings.app_port == 80 else f":{settings.app_port}"
    url = pulumi.Output.concat("http://", server.public_ip, port_suffix)
    # ingress_group: where CI admits its runner for the smoke test (scripts/runner_access.py).
    return {
        "public_ip": server.public_ip,
        "instance_id": server.instance_id,
        "url": url,
        "ingress_group": firewall.security_group_id,
    }


def fleet(settings: StackSettings, base: Foundation) -> dict[str, pulumi.Output[str]]:
    """Auto Scaling group behind an ALB (HTTPS with a domain).

    Returns `url`, `autoscaling_group`, `load_balancer` (its ARN) and `ingress_group`.
    """
    tags, spec, network = settings.tags, settings.fleet, base.network
    firewall = FleetFirewall(
        "cali",
        FleetFirewallArgs(
            vpc_id=network.vpc_id,
            cidrs=settings.allowed_cidrs,
            https=spec.https,
            tags=tags,
        ),
    )
    endpoints = ServiceEndpoints(
        "cali",
        ServiceEndpointsArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.subnet_ids,
            route_table_id=network.route_table_id,
            client_group_id=firewall.instance_group_id,
            region=settings.region,
            session_manager=spec.session_manager,
            tags=tags,
        ),
    )
    https = None
    if spec.https:
        certificate = TlsCertificate("cali", TlsCertificateArgs(spec.domain, spec.hosted_zone, tags))
        https = HttpsArgs(spec.domain, certificate.zone_id, certificate.certificate_arn)
    logs = None
    if spec.access_logs:
        account = aws.get_caller_identity_output().account_id
        logs = AccessLogBucket("cali", AccessLogBucketArgs(settings.region, account, tags))
    balancer = LoadBalancer(
        "cali",
        LoadBalancerArgs(
            vpc_id=network.vpc_id,
            subnet_ids=network.subnet_ids,
            security_group_id=firewall.load_balancer_group_id,
            app_port=settings.app_port,
            https=https,
            tags=tags,
            access_log_bucket=logs.bucket_name if logs else None,
            access_log_dependencies=[logs.policy] if logs else [],
        ),
    )
    target = spec.cpu_target if spec.scaling_metric == "cpu" else spec.requests_per_second_target
    group = Fleet(
        "cali",
        FleetArgs(
            ami=base.ami,
            ami_pinned=bool(settings.ami),
            instance_type=settings.instance_type,
            subnet_ids=network.subnet_ids,
            security_group_id=firewall.instance_group_id,
            instance_profile_name=base.instance_profile_name,
            user_data=base.user_data,
            root_volume_gb=settings.root_volume_gb,
            min_size=spec.min_size,
            max_size=spec.max_size,
            desired_size=spec.desired_size,
            target_group_arn=balancer.target_group_arn,
            min_healthy_percent=spec.min_healthy_percent,
            scaling=ScalingArgs(spec.scaling_metric, target, balancer.request_count_label),
            tags=tags,
            boot_dependencies=[endpoints, balancer.health_listener],
            guardrail_alarms=base.monitoring.guardrail_alarm_names,
        ),
    )
    # Blue/green on a new target group: the public listeners switch only once the (new) group's
    # create has returned with healthy instances behind the target group.
    balancer.serve(after=[group.group])
    base.monitoring.watch_targets(
        balancer.balancer.arn_suffix, balancer.target_group.arn_suffix, after=[group.group]
    )
    # `up` returns when the instance refresh has succeeded, not when it starts (infra/rollout.py),
    # so the smoke test that follows talks to the new instances only.
    RolloutWait(
        "cali-rollout",
        RolloutWaitArgs(
            group_name=group.group_name,
            template_version=group.launch_template.latest_version.apply(str),
            region=settings.region,
        ),
        # a child of the fleet, as every resource belongs to a component; after the group's update,
        # which is what starts the refresh
        opts=pulumi.ResourceOptions(parent=group, depends_on=[group.group]),
    )
    return {
        "url": balancer.url,
        "autoscaling_group": group.group_name,
        # what `aws elbv2 describe-load-balancer-attributes --load-balancer-arn` takes (operations.md)
        "load_balancer": balancer.balancer.arn,
        "ingress_group": firewall.load_balancer_group_id,
    }
