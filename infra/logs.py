"""The CloudWatch log groups (the app's, the VPC's flow logs) and the load balancer's access-log bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import state_hardening as hardening
from infra.identity import program_role


@dataclass
class AppLogsArgs:
    """Arguments for AppLogs.

    Attributes:
        retention_days: How long CloudWatch keeps the logs (one of the values CloudWatch accepts).
        tags: Tags for the log group.
    """

    retention_days: int
    tags: dict[str, str]


class AppLogs(pulumi.ComponentResource):
    """One log group for the app, with a bounded retention so logs do not cost forever."""

    def __init__(self, name: str, args: AppLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:AppLogs", name, None, opts)
        group = aws.cloudwatch.LogGroup(
            f"{name}-logs",
            retention_in_days=args.retention_days,
            tags=args.tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.group_name: pulumi.Output[str] = group.name
        self.arn: pulumi.Output[str] = group.arn
        self.register_outputs({"group_name": self.group_name, "arn": self.arn})


# Short on purpose: flow logs answer "what reached (or was refused by) the VPC lately", and
# CloudWatch bills their ingestion and storage; a week covers an incident found the next working day.
FLOW_LOG_RETENTION_DAYS = 7
# The principal VPC Flow Logs assumes to write to CloudWatch Logs (Amazon VPC User Guide,
# "IAM role for publishing flow logs to CloudWatch Logs").
FLOW_LOGS_PRINCIPAL = "vpc-flow-logs.amazonaws.com"
FLOW_LOG_ACTIONS = [
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
]


def flow_log_role_policy(log_group_arn: str) -> str:
    """The flow-log role's inline policy: write to its one log group and nothing else."""
    group = log_group_arn.removesuffix(":*")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Action": FLOW_LOG_ACTIONS, "Resource": [group, f"{group}:log-stream:*"]}
            ],
        }
    )


def flow_log_trust_policy(account_id: str) -> str:
    """Only VPC Flow Logs, on behalf of this account, may assume the role (confused-deputy guard)."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": FLOW_LOGS_PRINCIPAL},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                }
            ],
        }
    )


@dataclass
class FlowLogsArgs:
    """Arguments for FlowLogs.

    Attributes:
        vpc_id: The VPC whose traffic is logged.
        account_id: The account, for the role's trust condition.
        tags: Tags for every taggable resource.
    """

    vpc_id: pulumi.Input[str]
    account_id: pulumi.Input[str]
    tags: dict[str, str]


class FlowLogs(pulumi.ComponentResource):
    """VPC flow logs (accepted and rejected) into a log group of their own, kept FLOW_LOG_RETENTION_DAYS."""

    def __init__(self, name: str, args: FlowLogsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:FlowLogs", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(
            f"{name}-flow-logs",
            retention_in_days=FLOW_LOG_RETENTION_DAYS,
            tags=args.tags,
            opts=child,
        )
        role = program_role(
            f"{name}-flow-logs",
            pulumi.Output.from_input(args.account_id).apply(flow_log_trust_policy),
            args.tags,
            child,
        )
        aws.iam.RolePolicy(
            f"{name}-flow-logs",
            role=role.id,
            policy=group.arn.apply(flow_log_role_policy),
            opts=child,
        )
        aws.ec2.FlowLog(
            f"{name}-flow-log",
            vpc_id=args.vpc_id,
            # ALL: the REJECT records are what shows a narrowed allowedCidrs refusing someone.
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=group.arn,
            iam_role_arn=role.arn,
            # One-minute aggregation costs no more than ten and shows a refusal while it matters.
            max_aggregation_interval=60,
            tags=args.tags,
            opts=child,
        )
        self.group_name: pulumi.Output[str] = group.name
        self.register_outputs({"group_name": self.group_name})


# The ALB writes access logs with these account's credentials in regions opened before August 2022
# (ELB User Guide, "Enable access logs for your Application Load Balancer", step 2; the same ids are
# in AWS's CloudFormation samples, e.g. gist ipmb/fb79a061ae071e6a09417cd1ddac4b5e); newer regions use
# the service principal below instead.
ELB_LOG_ACCOUNTS = {
    "us-east-1": "127311923021",
    "us-east-2": "033677994240",
    "us-west-1": "027434742980",
    "us-west-2": "797873946194",
    "ca-central-1": "985666609251",
    "eu-central-1": "054676820928",
    "eu-west-1": "156460612806",
    "eu-west-2": "652711504416",
    "eu-west-3": "009996457667",
    "eu-north-1": "897822967062",
    "ap-northeast-1": "582318560864",
    "ap-northeast-2": "600734575887",
    "ap-south-1": "718504428378",
    "ap-southeast-1": "114774131450",
    "ap-southeast-2": "783225319266",
    "sa-east-1": "507241528517",
}
ELB_LOG_DELIVERY_PRINCIPAL = "logdelivery.elasticloadbalancing.amazonaws.com"
ACCESS_LOG_PREFIX = "alb"
ACCESS_LOG_EXPIRY_DAYS = 30


def access_log_bucket_policy(bucket: str, region: str, account_id: str) -> str:
    """Let the region's ELB log writer put objects under this account's prefix; refuse plain HTTP."""
    principal = (
        {"AWS": f"arn:aws:iam::{ELB_LOG_ACCOUNTS[region]}:root"}
        if region in ELB_LOG_ACCOUNTS
        else {"Service": ELB_LOG_DELIVERY_PRINCIPAL}
    )
    policy = hardening.tls_only_policy(bucket)  # the state bucket's TLS-only statement, shared
    policy["Statement"].insert(
        0,
        {
            "Sid": "ElbLogDelivery",
            "Effect": "Allow",
            "Principal": principal,
            "Action": "s3:PutObject",
            "Resource": f"arn:aws:s3:::{bucket}/{ACCESS_LOG_PREFIX}/AWSLogs/{account_id}/*",
        },
    )
    return json.dumps(policy, sort_keys=True)


@dataclass
class AccessLogBucketArgs:
    """Arguments for AccessLogBucket.

    Attributes:
        region: The load balancer's region (the bucket must be in the same one).
        account_id: The account the logs are written under.
        tags: Tags for the bucket.
    """

    region: str
    account_id: pulumi.Input[str]
    tags: dict[str, str]


class AccessLogBucket(pulumi.ComponentResource):
    """The load balancer's access-log bucket: SSE-S3, private, TLS-only, objects expire."""

    def __init__(
        self, name: str, args: AccessLogBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cali:aws:AccessLogBucket", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # Expendable and expiring, so `pulumi destroy` may empty it; the state bucket is the one kept.
        bucket = aws.s3.Bucket(f"{name}-alb-logs", force_destroy=True, tags=args.tags, opts=child)
        aws.s3.BucketOwnershipControls(
            f"{name}-alb-logs",
            bucket=bucket.id,
            rule={"object_ownership": hardening.OBJECT_OWNERSHIP},
            opts=child,
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-alb-logs",
            bucket=bucket.id,
            block_public_acls=hardening.PUBLIC_ACCESS_BLOCK["BlockPublicAcls"],
            ignore_public_acls=hardening.PUBLIC_ACCESS_BLOCK["IgnorePublicAcls"],
            block_public_policy=hardening.PUBLIC_ACCESS_BLOCK["BlockPublicPolicy"],
            restrict_public_buckets=hardening.PUBLIC_ACCESS_BLOCK["RestrictPublicBuckets"],
            opts=child,
        )
        # SSE-S3: "the only server-side encryption option that's supported" for ALB access logs
        # (ELB User Guide, "Enable access logs for your Application Load Balancer", step 1).
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-alb-logs",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": hardening.SSE_ALGORITHM}}],
            opts=child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-alb-logs",
            bucket=bucket.id,
            rules=[
                {
                    "id": "expire-access-logs",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "expiration": {"days": ACCESS_LOG_EXPIRY_DAYS},
                    # A part-uploaded object is invisible and billed until aborted; the state
                    # bucket's period, in the same rule (Checkov CKV_AWS_300, policy/ pack).
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": hardening.ABORT_MULTIPART_DAYS
                    },
                }
            ],
            opts=child,
        )
        self.policy = aws.s3.BucketPolicy(
            f"{name}-alb-logs",
            bucket=bucket.id,
            policy=pulumi.Output.all(bucket.bucket, args.account_id).apply(
                lambda v: access_log_bucket_policy(v[0], args.region, v[1])
            ),
            opts=child,
        )
        self.bucket_name: pulumi.Output[str] = bucket.bucket
        self.register_outputs({"bucket_name": self.bucket_name})
