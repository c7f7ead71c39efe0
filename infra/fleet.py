"""The fleet: a launch template and an Auto Scaling group that AWS scales, heals and rolls.

The same AMI, boot script, instance profile, IMDSv2 settings and encrypted gp3 root volume as the
single server; what differs is who keeps the instances alive: EC2 Auto Scaling, not this program.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial

import pulumi
import pulumi_aws as aws

from infra.server import METADATA_OPTIONS
from infra.tags import named

# Seconds from launch until a new instance's boot script has installed Docker and pulled the image
# (two to three minutes on a fresh instance): until then it is neither judged by health checks nor
# counted by the scaling policy, and an instance refresh does not move on.
BOOT_SECONDS = 180
HEALTH_CHECK_GRACE_SECONDS = 300
ROOT_DEVICE = "/dev/xvda"  # Amazon Linux 2023's root device name


@dataclass
class ScalingArgs:
    """The target-tracking policy.

    Attributes:
        metric: "cpu" (the group's average CPU) or "requests" (load balancer requests per instance).
        target: CPU percent, or requests per second per instance.
        request_count_label: The load balancer's and target group's metric label (requests only).
    """

    metric: str
    target: int
    request_count_label: pulumi.Input[str] | None = None


@dataclass
class FleetArgs:
    """Arguments for Fleet.

    Attributes:
        ami: The AMI to launch.
        ami_pinned: True when `ami` comes from config; False ("latest") ignores newer AMIs until rolled.
        instance_type: An x86_64 EC2 instance type.
        subnet_ids: Subnets in at least two availability zones.
        security_group_id: The instances' security group.
        instance_profile_name: The instance profile carrying the server role.
        user_data: The rendered boot script (it names the image digest).
        root_volume_gb: Size of each instance's encrypted gp3 root volume.
        min_size: Fewest instances.
        max_size: Most instances.
        desired_size: Instances at creation; the scaling policy owns the number afterwards.
        target_group_arn: The load balancer's target group the instances join.
        min_healthy_percent: Share of the desired capacity kept healthy during an instance refresh.
        scaling: The target-tracking policy.
        tags: Tags for every taggable resource and every instance and volume launched.
        boot_dependencies: What an instance needs while it boots (the VPC endpoints) and what must
            exist before its create can wait for healthy instances (the listener that puts the target
            group in use): the group is created after them.
        guardrail_alarms: Alarm names whose ALARM state fails (and so rolls back) an instance refresh.
    """

    ami: pulumi.Input[str]
    ami_pinned: bool
    instance_type: str
    subnet_ids: list[pulumi.Input[str]]
    security_group_id: pulumi.Input[str]
    instance_profile_name: pulumi.Input[str]
    user_data: pulumi.Input[str]
    root_volume_gb: int
    min_size: int
    max_size: int
    desired_size: int
    target_group_arn: pulumi.Input[str]
    min_healthy_percent: int
    scaling: ScalingArgs
    tags: dict[str, str]
    boot_dependencies: list[pulumi.Resource] = field(default_factory=list)
    guardrail_alarms: list[pulumi.Input[str]] = field(default_factory=list)


def refresh_preferences(
    min_healthy_percent: int, guardrail_alarms: Sequence[pulumi.Input[str]] = ()
) -> dict[str, object]:
    """Instance refresh preferences: replace in rolling batches without dipping below the minimum.

    AWS allows the maximum to be at most 100 points above the minimum, up to 200%; the widest window
    lets a refresh launch the replacements before it terminates what they replace.

    Args:
        min_healthy_percent: Share of the desired capacity kept healthy.
        guardrail_alarms: CloudWatch alarm names (the service's 5xx rate and p99 latency): "If any
            of these alarms goes into ALARM state, Instance Refresh is failed" (pulumi_aws
            autoscaling/_inputs.py, GroupInstanceRefreshPreferencesAlarmSpecificationArgs), and a
            failed refresh with auto rollback goes back to the previous launch template version
            (AWS EC2 Auto Scaling API reference, StartInstanceRefresh: AlarmSpecification, AutoRollback).
            So a build that passes /ready but then serves errors or slowly undoes itself.
    """
    preferences: dict[str, object] = {
        "min_healthy_percentage": min_healthy_percent,
        "max_healthy_percentage": min(200, min_healthy_percent + 100),
        # Instances already on the new launch template version are left alone.
        "skip_matching": True,
        # A refresh whose instances never pass the health check, or that trips a guardrail alarm,
        # is undone, back to the last version.
        "auto_rollback": True,
    }
    if guardrail_alarms:
        preferences["alarm_specification"] = {"alarms": list(guardrail_alarms)}
    return preferences


def target_tracking(scaling: ScalingArgs) -> dict[str, object]:
    """The target-tracking configuration for the chosen metric."""
    if scaling.metric == "cpu":
        return {
            "predefined_metric_specification": {"predefined_metric_type": "ASGAverageCPUUtilization"},
            "target_value": scaling.target,
        }
    return {
        "predefined_metric_specification": {
            "predefined_metric_type": "ALBRequestCountPerTarget",
            "resource_label": scaling.request_count_label,
        },
        # CloudWatch counts this metric per minute; config speaks per second, as bench/ does.
        "target_value": scaling.target * 60,
    }


class Fleet(pulumi.ComponentResource):
    """Launch template, Auto Scaling group (ELB health checks, instance refresh) and its scaling policy."""

    def __init__(self, name: str, args: FleetArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Fleet", name, None, opts)

        tags = partial(named, args.tags, name)

        self.launch_template = aws.ec2.LaunchTemplate(
            f"{name}-lt",
            image_id=args.ami,
            instance_type=args.instance_type,
            iam_instance_profile={"name": args.instance_profile_name},
            network_interfaces=[
                {
                    "device_index": 0,
                    # No public address: the only way in is the load balancer, the only way out the
                    # VPC endpoints (see ServiceEndpoints).
                    "associate_public_ip_address": "false",
                    "security_groups": [args.security_group_id],
                    "delete_on_termination": "true",
                }
            ],
            # IMDSv2 only, hop limit 1: as the single server (infra/server.py says why).
            metadata_options=METADATA_OPTIONS,
            # Declared for the scanner; launch templates take it as a string (pulumi_aws docstring).
            ebs_optimized="true",
            block_device_mappings=[
                {
                    "device_name": ROOT_DEVICE,
                    "ebs": {
                        "volume_type": "gp3",
                        "volume_size": args.root_volume_gb,
                        "encrypted": "true",
                        "delete_on_termination": "true",
                    },
                }
            ],
            # Detailed (1-minute) metrics only when the policy scales on CPU: with 5-minute ones it
            # would react five times slower. Request counts come from the load balancer every minute.
            monitoring={"enabled": args.scaling.metric == "cpu"},
            # Launch templates take user data base64-encoded (an instance takes it plain).
            user_data=pulumi.Output.from_input(args.user_data).apply(
                lambda script: base64.b64encode(script.encode()).decode()
            ),
            update_default_version=True,
            tag_specifications=[
                {"resource_type": "instance", "tags": tags("instance")},
                {"resource_type": "volume", "tags": tags("root")},
                {"resource_type": "network-interface", "tags": tags("eni")},
            ],
            tags=tags("lt"),
            # As for the single server: with "latest" AMI a new Amazon Linux release must not roll
            # the fleet on an unrelated `up`; pinning an AMI rolls it deliberately.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=[] if args.ami_pinned else ["imageId"]),
        )
        self.group = aws.autoscaling.Group(
            f"{name}-asg",
            vpc_zone_identifiers=args.subnet_ids,
            min_size=args.min_size,
            max_size=args.max_size,
            desired_capacity=args.desired_size,
            # The version number, not "$Latest": a new image digest is a new version, a new version
            # is a change of this group, and that change starts the instance refresh below.
            launch_template={
                "id": self.launch_template.id,
                "version": self.launch_template.latest_version.apply(str),
            },
            target_group_arns=[args.target_group_arn],
            # ELB: an instance whose /ready never answers is replaced, not just one whose VM is down.
            health_check_type="ELB",
            health_check_grace_period=HEALTH_CHECK_GRACE_SECONDS,
            # Also the refresh's warm-up: AWS advises setting it here rather than per refresh.
            default_instance_warmup=BOOT_SECONDS,
            instance_refresh={
                "strategy": "Rolling",
                "preferences": refresh_preferences(args.min_healthy_percent, args.guardrail_alarms),
            },
            # The first `up` returns once fleetMinSize instances are healthy behind the load balancer,
            # so CI's smoke test starts against a serving fleet.
            min_elb_capacity=args.min_size,
            wait_for_capacity_timeout="15m",
            # Instances and volumes get their tags from the launch template; these tag the group.
            tags=[{"key": k, "value": v, "propagate_at_launch": False} for k, v in tags("asg").items()],
            # The scaling policy owns the running count; an `up` must not reset it to fleetDesiredSize.
            # A new target group (appPort changed) is a NEW group, never this one's attachment
            # rewritten in place (which would detach the old instances from the serving target group
            # at once). Create-before-delete (the name is auto-named, so both coexist): the engine
            # creates the replacement first, its create returns once min_elb_capacity instances are
            # healthy in the new target group, the serving listeners (which depend on this group)
            # switch after that, and the old group is deleted at the end of the `up`
            # (pulumi/pulumi pkg/resource/deploy/step_generator.go, deployment_executor.go).
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=["desiredCapacity"],
                depends_on=args.boot_dependencies,
                replace_on_changes=["targetGroupArns"],
                delete_before_replace=False,
            ),
        )
        aws.autoscaling.Policy(
            f"{name}-scaling",
            autoscaling_group_name=self.group.name,
            policy_type="TargetTrackingScaling",
            target_tracking_configuration=target_tracking(args.scaling),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.group_name: pulumi.Output[str] = self.group.name
        self.register_outputs({"group_name": self.group_name})
