"""The single app server: an EC2 instance behind an Elastic IP, recovered when its host fails."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import pulumi
import pulumi_aws as aws

from infra.monitoring import alarm_name
from infra.readiness import READY_TIMEOUT_S, ReadinessGate, ReadinessGateArgs
from infra.tags import named

# Amazon's public pointer to the current Amazon Linux 2023 AMI for x86_64.
AL2023_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"

# IMDSv2 only, hop limit 1: the host's own calls (the ECR credential helper, the awslogs driver, the
# SSM agent) are one hop; a process inside a container is two and gets no answer, so an SSRF in the
# internet-facing app cannot fetch the instance role's credentials. The app never calls AWS.
# Shared by the single server and the fleet's launch template.
METADATA_OPTIONS = {
    "http_endpoint": "enabled",
    "http_tokens": "required",
    "http_put_response_hop_limit": 1,
}


# The instance's properties whose in-place update would stop it, or change it under the running app:
# a change of one is a new server through the gate (docs/deploy.md, change-impact table).
REPLACE_ON_CHANGES = ("instanceType", "rootBlockDevice")


def amazon_linux_ami(pinned: str) -> pulumi.Input[str]:
    """The AMI to launch: the pinned id when given, else the current Amazon Linux 2023 one."""
    if pinned:
        return pinned
    return aws.ssm.get_parameter_output(name=AL2023_PARAMETER).value


@dataclass
class ServerArgs:
    """Arguments for Server.

    Attributes:
        ami: The AMI to launch.
        ami_pinned: True when `ami` comes from config: then a change of it replaces the server.
            False when it is "latest": then a newer AMI is ignored until deliberately rolled.
        instance_type: An x86_64 EC2 instance type.
        subnet_id: A public subnet.
        security_group_id: The app's security group.
        instance_profile_name: The instance profile carrying the server's role.
        user_data: The rendered boot script (it names the image digest).
        root_volume_gb: Size of the encrypted gp3 root volume.
        region: The region, for the recovery alarm's action ARN and the readiness gate's AWS calls.
        tags: Tags for every taggable resource.
        host_port: The port the boot script publishes the app on (the gate asks it on loopback).
        image: The digest reference the boot script starts; the address moves only to a server
            whose container runs exactly it and whose /ready answers 200.
        alarm_topic_arn: The SNS topic the recovery alarm also tells (infra/monitoring.py), so an
            operator hears that the host failed; empty: it only acts.
        ready_timeout_s: How long a replacement may take to become ready before `up` fails.
    """

    ami: pulumi.Input[str]
    ami_pinned: bool
    instance_type: str
    subnet_id: pulumi.Input[str]
    security_group_id: pulumi.Input[str]
    instance_profile_name: pulumi.Input[str]
    user_data: pulumi.Input[str]
    root_volume_gb: int
    region: str
    tags: dict[str, str]
    image: pulumi.Input[str]
    host_port: int = 80
    alarm_topic_arn: pulumi.Input[str] = ""
    ready_timeout_s: int = READY_TIMEOUT_S


class Server(pulumi.ComponentResource):
    """Instance, Elastic IP and its association, and the auto-recovery alarm."""

    def __init__(self, name: str, args: ServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Server", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        tags = partial(named, args.tags, name)

        self.instance = aws.ec2.Instance(
            f"{name}-instance",
            ami=args.ami,
            instance_type=args.instance_type,
            subnet_id=args.subnet_id,
            vpc_security_group_ids=[args.security_group_id],
            iam_instance_profile=args.instance_profile_name,
            # A public address from the first second, so the boot script reaches ECR before the
            # Elastic IP is attached (the EIP then takes its place).
            associate_public_ip_address=True,
            metadata_options=METADATA_OPTIONS,
            # Scanner finding: declare it. t3 is EBS-optimized anyway, at no extra cost (AWS User Guide,
            # "Amazon EBS-optimized instance types"); pulumi_aws ec2/instance.py ebs_optimized docstring.
            ebs_optimized=True,
            root_block_device={
                "volume_type": "gp3",
                "volume_size": args.root_volume_gb,
                "encrypted": True,
                "delete_on_termination": True,
            },
            # The root volume is tagged in RunInstances itself (a TagSpecification), so a policy
            # can require the tag at creation; `root_block_device.tags` would be a CreateTags after
            # it, refused by such a policy, and conflicts with this argument (pulumi_aws
            # ec2/instance.py, the five kinds of tags; ec2/_inputs.py InstanceRootBlockDeviceArgs.tags).
            volume_tags=tags("root"),
            monitoring=False,  # basic 5-minute metrics suffice for the recovery alarm; detailed ones cost
            user_data=args.user_data,
            # The boot script names the image digest: a new image means a fresh server, started
            # before the old one is deleted, instead of mutating a running one.
            user_data_replace_on_change=True,
            tags=tags("instance"),
            # With "latest" AMI, a new Amazon Linux release must not replace the server on an
            # unrelated `up`; rolling it is a deliberate act (see docs/deploy.md, "Rolling the AMI").
            # The provider applies a new instance type in place by stopping and starting the instance
            # ("Updates to this field will trigger a stop/start of the EC2 instance", pulumi_aws
            # ec2/instance.py, instance_type), minutes without service and no gate; a root volume
            # change is a live ModifyVolume that the running file system never sees. Both replace the
            # server instead, through the readiness gate like a new image ("Changes to any of these
            # property paths will force a replacement", pulumi/resource.py, replace_on_changes), and
            # create-before-delete, the default, keeps the old one serving until the address moves.
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=[] if args.ami_pinned else ["ami"],
                replace_on_changes=list(REPLACE_ON_CHANGES),
            ),
        )
        # The address lives apart from the instance, so a replaced instance keeps it: only the
        # association names the instance, and it is replaced to point at the new one.
        self.eip = aws.ec2.Eip(f"{name}-eip", domain="vpc", tags=tags("eip"), opts=child)
        # The gate takes the new instance's id and gives it back once that instance serves the build
        # being deployed (infra/readiness.py). A new instance id is a new gate (its diff replaces on
        # any change), so on every replacement the order is: new instance (Pulumi's default
        # create-before-delete: the old one stays until the whole `up` succeeds), then the wait, then
        # the address moves. When the wait fails, `up` stops before the association is touched:
        # the old server keeps the address. Its deletion stays pending and runs at the end of the
        # next successful `up`, not at its start (pulumi/pulumi#11027, "Do not execute pending
        # deletes at the start of deployment").
        self.gate = ReadinessGate(
            f"{name}-ready",
            ReadinessGateArgs(
                region=args.region,
                instance_id=self.instance.id,
                port=args.host_port,
                image=args.image,
                timeout_s=args.ready_timeout_s,
            ),
            opts=child,
        )
        aws.ec2.EipAssociation(
            f"{name}-eip-assoc",
            allocation_id=self.eip.allocation_id,
            # From the gate, not the instance: this input is known only once the gate exists.
            instance_id=self.gate.instance_id,
            # An address has one association at a time: creating the new one first would silently
            # take the address over, and deleting the old one afterwards would then fail on an
            # association id that no longer exists. Old one out, new one in: seconds without the IP
            # (the disassociate and associate calls), and only after the gate has passed, since the
            # engine registers this resource only once its inputs resolve.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        # A failed system status check means the host under the instance is broken; EC2's recover
        # action moves the instance (same id, EIP, volume) to healthy hardware.
        aws.cloudwatch.MetricAlarm(
            f"{name}-recover",
            name=alarm_name(pulumi.get_stack(), "recover"),
            alarm_description=f"recover {name} when the system status check fails",
            namespace="AWS/EC2",
            metric_name="StatusCheckFailed_System",
            dimensions={"InstanceId": self.instance.id},
            statistic="Maximum",
            period=60,
            evaluation_periods=2,
            comparison_operator="GreaterThanThreshold",
            threshold=0,
            alarm_actions=[f"arn:aws:automate:{args.region}:ec2:recover"]
            + ([args.alarm_topic_arn] if args.alarm_topic_arn else []),
            tags=tags("recover"),
            opts=child,
        )
        self.public_ip: pulumi.Output[str] = self.eip.public_ip
        self.instance_id: pulumi.Output[str] = self.instance.id
        self.register_outputs({"public_ip": self.public_ip, "instance_id": self.instance_id})
