"""What CI's AWS roles may do, derived from the resource types the Pulumi program registers.

`RESOURCE_TYPES` maps every Pulumi type token the program registers, in either mode, to the IAM
actions its provider calls to create, read, update and delete it, each with the resources it may act
on; `INVOKES` does the same for the data sources the program calls. `read_policy` (both roles) and
`deploy_policy` (the deploy role's writes) render them into documents that `python -m
account.bootstrap` puts in place. `tests/account/test_permissions.py` runs the real program under mocks
in both modes and fails when it registers a type (or calls an invoke) this table lacks, and lints
the documents with parliament.

Scoping, in order of preference (AWS's service authorization reference says which each action allows):
- by name: every physical name the program makes starts with `NAME_PREFIX` (Pulumi auto-names
  `cali-role` as `cali-role-1a2b3c4`), so ECR, Logs, IAM, S3, SNS, CloudWatch, ELB and Auto Scaling
  ARNs are patterns like `...:repository/cali-*`;
- by tag, where the ARN holds only an id (EC2, ACM, KMS keys): a create must carry the stack's
  `project` tag (`aws:RequestTag`), every later change needs the resource to carry it
  (`aws:ResourceTag`); the program tags every such resource (tests/infra/test_program.py);
- `*` only for actions AWS defines no resource for (Describe*, List*, GetAuthorizationToken), all of
  them reads.
Around those grants: roles only under the program's IAM path and with its permissions boundary
(`boundary_policy`, infra/tags.py names both), and `guard_rails_policy`, explicit Denies every CI
role has (CI's own identities, boundaries, the secrets key, the state bucket's history).
`account/calls.py` and `account/authz.py` prove the documents against AWS's authorization rules
(tests/account/test_authorization.py).

To extend: add the new type's token with `read(...)` and `write(...)` grants below; the tests say
when one is missing, and parliament says when an action name or its resource does not exist.
No Pulumi import here: the bootstrap runs before Pulumi is set up.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from infra import state_hardening
from infra.tags import PERMISSIONS_BOUNDARY_POLICY, PROGRAM_ROLE_PATH, RUNNER_ACCESS_TAG

# Every physical name the program derives starts with this (__main__.py names its components "cali").
NAME_PREFIX = "cali"
# The tag key and value every taggable resource of a stack carries (infra.config.StackSettings.tags).
TAG_KEY = "project"
TAG_VALUE = state_hardening.STATE_BUCKET_TAGS[TAG_KEY]
# The server's role (infra.identity: ServerIdentity "cali" names it "cali-role"): the one role the
# deploy role may hand to EC2.
SERVER_ROLE_PATTERN = f"{NAME_PREFIX}-role-*"
# Where a DIY backend keeps stacks, history, backups and locks inside the bucket.
STATE_PREFIX = ".pulumi/"

DEPLOY_ROLE = "cali-housing-deploy"
PREVIEW_ROLE = "cali-housing-preview"
CI_HELPER_ROLE = "cali-housing-ci-helper"
ROLE_POLICY_NAME = "derived-from-program"  # the deploy role's inline policy (writes)
READ_POLICY = "cali-housing-ci-read"  # the managed policy both roles have (reads)
GUARD_RAILS_POLICY = "cali-housing-ci-guard-rails"  # the managed policy of Denies every CI role has
KMS_ALIAS = "alias/cali-housing-pulumi"
GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
OIDC_AUDIENCE = "sts.amazonaws.com"  # what aws-actions/configure-aws-credentials asks GitHub for
# The `sub` claims GitHub puts in a job's token: a job in the production environment, and a pull
# request's job (docs.github.com, "About security hardening with OpenID Connect", example subjects).
DEPLOY_SUBJECT = "environment:production"
PREVIEW_SUBJECT = "pull_request"
# Main-branch jobs outside the production environment (the smoke job's temporary ingress rule,
# ami-update): giving them the environment would ask for a second approval of every deploy.
CI_HELPER_SUBJECT = "ref:refs/heads/main"

ANY = "*"
ARN = "arn:aws"


@dataclass(frozen=True)
class Grant:
    """Actions on resources (ARN templates), maybe under a condition; `write` ones go to deploy only.

    Templates may name {region}, {account}, {prefix}, {bucket} and {key_arn}.
    """

    actions: tuple[str, ...]
    resources: tuple[str, ...] = (ANY,)
    condition: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    write: bool = False


def read(*actions: str, on: Iterable[str] = (ANY,)) -> Grant:
    """Describe/list/get actions: both roles get them."""
    return Grant(tuple(actions), tuple(on))


def write(
    *actions: str, on: Iterable[str] = (ANY,), when: Mapping[str, Mapping[str, Any]] | None = None
) -> Grant:
    """Create/update/delete actions: the deploy role only."""
    return Grant(tuple(actions), tuple(on), dict(when or {}), write=True)


# The runner-facing group's tag, as a condition (infra/tags.py declares it).
RUNNER_ACCESS_CONDITION = {f"aws:ResourceTag/{k}": v for k, v in RUNNER_ACCESS_TAG.items()}
# Tag conditions for resources whose ARNs hold an id, not a name.
CREATED_TAGGED = {"StringEquals": {f"aws:RequestTag/{TAG_KEY}": TAG_VALUE}}
TAGGED = {"StringEquals": {f"aws:ResourceTag/{TAG_KEY}": TAG_VALUE}}


def passed_to(service: str) -> dict[str, dict[str, str]]:
    """iam:PassRole only towards one AWS service."""
    return {"StringEquals": {"iam:PassedToService": service}}


# The server's role, to EC2 only. IfExists: AddRoleToInstanceProfile checks PassRole too, and AWS
# does not document iam:PassedToService in that check; the role passed is the server's either way,
# capped by the permissions boundary.
PASS_SERVER_ROLE = Grant(
    ("iam:PassRole",),
    (f"{ARN}:iam::{{account}}:role{PROGRAM_ROLE_PATH}{SERVER_ROLE_PATTERN}",),
    {"StringEqualsIfExists": {"iam:PassedToService": "ec2.amazonaws.com"}},
    write=True,
)


# ARN templates by name, one per kind of resource the program names.
ECR_REPO = f"{ARN}:ecr:{{region}}:{{account}}:repository/{{prefix}}-*"
LOG_GROUP = f"{ARN}:logs:{{region}}:{{account}}:log-group:{{prefix}}-*"
LOG_GROUP_STREAMS = f"{LOG_GROUP}:log-stream:*"
# The program's roles, under their own path: no pattern here can name CI's roles (at "/").
ROLE = f"{ARN}:iam::{{account}}:role{PROGRAM_ROLE_PATH}{{prefix}}-*"
SERVER_ROLE = f"{ARN}:iam::{{account}}:role{PROGRAM_ROLE_PATH}{SERVER_ROLE_PATTERN}"
BOUNDARY = f"{ARN}:iam::{{account}}:policy/{PERMISSIONS_BOUNDARY_POLICY}"
# A role write is allowed only on a role that carries (or, creating it, will carry) the boundary.
WITH_BOUNDARY = {"ArnEquals": {"iam:PermissionsBoundary": BOUNDARY}}
INSTANCE_PROFILE = f"{ARN}:iam::{{account}}:instance-profile/{{prefix}}-*"
BUCKETS = (f"{ARN}:s3:::{{bucket}}", f"{ARN}:s3:::{{prefix}}-*")
ALARM = f"{ARN}:cloudwatch:{{region}}:{{account}}:alarm:{{prefix}}-*"
DASHBOARD = f"{ARN}:cloudwatch::{{account}}:dashboard/{{prefix}}-*"
TOPIC = f"{ARN}:sns:{{region}}:{{account}}:{{prefix}}-*"
ELB = (
    f"{ARN}:elasticloadbalancing:{{region}}:{{account}}:loadbalancer/app/{{prefix}}-*/*",
    f"{ARN}:elasticloadbalancing:{{region}}:{{account}}:targetgroup/{{prefix}}-*/*",
    # `*/`: the listener actions name both the app and the net form (parliament checks for both).
    f"{ARN}:elasticloadbalancing:{{region}}:{{account}}:listener/*/{{prefix}}-*/*",
    f"{ARN}:elasticloadbalancing:{{region}}:{{account}}:listener-rule/*/{{prefix}}-*/*",
)
ASG = f"{ARN}:autoscaling:{{region}}:{{account}}:autoScalingGroup:*:autoScalingGroupName/{{prefix}}-*"
# Reads may look at any zone (getZone finds the configured one by name); records change only in
# the zones the stacks are configured with (Scope.hosted_zones, one statement resource each).
HOSTED_ZONES = f"{ARN}:route53:::hostedzone/*"
CONFIGURED_ZONE = f"{ARN}:route53:::hostedzone/{{hosted_zone}}"
RUN_SHELL_DOCUMENT = f"{ARN}:ssm:{{region}}::document/AWS-RunShellScript"
# AWS's public parameters have no account in their ARN; parliament wants one, `*` matches both.
AL2023_PARAMETERS = f"{ARN}:ssm:{{region}}:*:parameter/aws/service/ami-amazon-linux-latest/*"
EC2_INSTANCES = f"{ARN}:ec2:{{region}}:{{account}}:instance/*"
# Every EC2 resource of this account and region (writes to them are tag-conditioned), and AMIs,
# which RunInstances is checked against too.
EC2_HERE = f"{ARN}:ec2:{{region}}:{{account}}:*"
AMIS = f"{ARN}:ec2:{{region}}:*:image/*"
# RunInstances authorizes each resource of the request on its own (Service Authorization Reference,
# ec2 RunInstances: image, instance, network-interface, security-group, subnet, volume, and
# launch-template when one is used). Split as AWS's own examples split it (EC2 User Guide, "Example
# policies to control access the Amazon EC2 API", launch instances with tags; AWS Knowledge Center
# "iam-policy-tags-restrict": the image, subnet and groups in one statement, the instance and volume
# with the tag conditions in another): what the call creates must be tagged in the request, what it
# uses must be the stack's already, and the AMI must be Amazon's (ec2:Owner, listed for `image`).
CREATED_BY_LAUNCH = (
    f"{ARN}:ec2:{{region}}:{{account}}:instance/*",
    f"{ARN}:ec2:{{region}}:{{account}}:volume/*",
)
# The provider tags no network interface in RunInstances (terraform-provider-aws
# internal/service/ec2/ec2_instance.go, resourceInstanceCreate: TagSpecifications for `instance`
# and `volume` only), so the interface a launch creates cannot be required to carry a tag.
LAUNCH_INTERFACES = f"{ARN}:ec2:{{region}}:{{account}}:network-interface/*"
AMAZON_IMAGES = {"StringEquals": {"ec2:Owner": "amazon"}}
VPCS = f"{ARN}:ec2:{{region}}:{{account}}:vpc/*"
CERTIFICATES = f"{ARN}:acm:{{region}}:{{account}}:certificate/*"
KMS_KEYS = f"{ARN}:kms:{{region}}:{{account}}:key/*"
# SNS defines no resource for a subscription's own actions; the region is what can be pinned.
THIS_REGION = {"StringEquals": {"aws:RequestedRegion": "{region}"}}


def ec2_create(*actions: str) -> tuple[Grant, Grant]:
    """EC2 creates in this account and region: the new resource tagged in the request, and the
    resources it is made in (the VPC of a subnet, group, endpoint or flow log) already the stack's."""
    return write(*actions, on=[EC2_HERE], when=CREATED_TAGGED), ec2_change(*actions)


def ec2_change(*actions: str) -> Grant:
    """EC2 changes and deletes, only of resources that already carry the stack's tag."""
    return write(*actions, on=[EC2_HERE], when=TAGGED)


RUN_INSTANCES = (
    write("ec2:RunInstances", on=CREATED_BY_LAUNCH, when=CREATED_TAGGED),
    write("ec2:RunInstances", on=[LAUNCH_INTERFACES]),
    # The subnet, security groups and launch template the instance is launched from.
    write("ec2:RunInstances", on=[EC2_HERE], when=TAGGED),
    write("ec2:RunInstances", on=[AMIS], when=AMAZON_IMAGES),
)

# ECR: what a `docker push` and a pull (cache, digest checks) of the stack's own repository call.
ECR_PULL = ("ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
ECR_PUSH = ("ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload", "ecr:PutImage")
ECR_IMAGE = (read(*ECR_PULL, "ecr:DescribeImages", on=[ECR_REPO]), write(*ECR_PUSH, on=[ECR_REPO]))
# Creating a tagged EC2 resource also calls CreateTags; allowed only inside those creates.
EC2_CREATES = (
    "ec2:CreateVpc",
    "ec2:CreateSubnet",
    "ec2:CreateInternetGateway",
    "ec2:CreateRouteTable",
    "ec2:CreateSecurityGroup",
    "ec2:RunInstances",
    "ec2:AllocateAddress",
    "ec2:CreateVpcEndpoint",
    "ec2:CreateLaunchTemplate",
    "ec2:CreateFlowLogs",
)
EC2_TAGS = (
    write(
        "ec2:CreateTags",
        on=[EC2_HERE],
        when={"StringEquals": {"ec2:CreateAction": [a.split(":")[1] for a in EC2_CREATES]}},
    ),
    ec2_change("ec2:CreateTags", "ec2:DeleteTags"),
)
S3_BUCKET_READ = read(
    "s3:ListBucket",
    "s3:GetBucketLocation",
    "s3:GetBucketAcl",
    "s3:GetBucketCORS",
    "s3:GetBucketWebsite",
    "s3:GetBucketVersioning",
    "s3:GetAccelerateConfiguration",
    "s3:GetBucketRequestPayment",
    "s3:GetBucketLogging",
    "s3:GetLifecycleConfiguration",
    "s3:GetReplicationConfiguration",
    "s3:GetEncryptionConfiguration",
    "s3:GetBucketObjectLockConfiguration",
    "s3:GetBucketPolicy",
    "s3:GetBucketPolicyStatus",
    "s3:GetBucketTagging",
    "s3:GetBucketOwnershipControls",
    "s3:GetBucketPublicAccessBlock",
    on=BUCKETS,
)


def _s3_setting(*actions: str) -> tuple[Grant, ...]:
    """A bucket sub-resource (versioning, policy, ...): read the bucket, write the setting."""
    return (S3_BUCKET_READ, write(*actions, on=BUCKETS))


_S3_LIFECYCLE = _s3_setting("s3:PutLifecycleConfiguration")
_S3_VERSIONING = _s3_setting("s3:PutBucketVersioning")
_S3_ENCRYPTION = _s3_setting("s3:PutEncryptionConfiguration")

RESOURCE_TYPES: dict[str, tuple[Grant, ...]] = {
    # --- the state bucket (adopted) and, issue 14, the load balancer's access-log bucket
    "aws:s3/bucket:Bucket": (
        S3_BUCKET_READ,
        write("s3:CreateBucket", "s3:DeleteBucket", "s3:PutBucketTagging", on=BUCKETS),
    ),
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": _s3_setting("s3:PutBucketOwnershipControls"),
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock": _s3_setting("s3:PutBucketPublicAccessBlock"),
    "aws:s3/bucketVersioning:BucketVersioning": _S3_VERSIONING,
    "aws:s3/bucketVersioningV2:BucketVersioningV2": _S3_VERSIONING,
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration": _S3_ENCRYPTION,
    "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2": (
        _S3_ENCRYPTION
    ),
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": _S3_LIFECYCLE,
    "aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2": _S3_LIFECYCLE,
    "aws:s3/bucketPolicy:BucketPolicy": _s3_setting("s3:PutBucketPolicy", "s3:DeleteBucketPolicy"),
    # --- registry and image
    "aws:ecr/repository:Repository": (
        read("ecr:DescribeRepositories", "ecr:ListTagsForResource", on=[ECR_REPO]),
        # The account setup makes the repositories (account/registries.py) and the program adopts
        # them (import_, protect, retain_on_delete: infra/registry.py), so a deploy never creates,
        # deletes or empties one: no CreateRepository, DeleteRepository or BatchDeleteImage.
        write(
            "ecr:PutImageTagMutability",
            "ecr:PutImageScanningConfiguration",
            "ecr:TagResource",
            "ecr:UntagResource",
            on=[ECR_REPO],
        ),
    ),
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": (
        read("ecr:GetLifecyclePolicy", on=[ECR_REPO]),
        write("ecr:PutLifecyclePolicy", "ecr:DeleteLifecyclePolicy", on=[ECR_REPO]),
    ),
    # pulumi-docker-build's Image (infra/image.py): a docker push to the repository, and its cache.
    "docker-build:index:Image": ECR_IMAGE,
    # --- logs, alarms, dashboards, notifications (issue 15)
    "aws:cloudwatch/logGroup:LogGroup": (
        read("logs:DescribeLogGroups", "logs:ListTagsForResource"),
        write(
            "logs:CreateLogGroup",
            "logs:DeleteLogGroup",
            "logs:PutRetentionPolicy",
            "logs:DeleteRetentionPolicy",
            "logs:TagResource",
            "logs:UntagResource",
            on=[LOG_GROUP, LOG_GROUP_STREAMS],
        ),
    ),
    "aws:cloudwatch/metricAlarm:MetricAlarm": (
        read("cloudwatch:DescribeAlarms", "cloudwatch:ListTagsForResource", on=[ALARM]),
        write("cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms", "cloudwatch:TagResource", on=[ALARM]),
        # The single server's alarm has EC2 recover it; CloudWatch checks the caller may do that.
        read("ec2:DescribeInstanceStatus"),
        # The first EC2-action alarm in an account makes CloudWatch's service-linked role.
        write(
            "iam:CreateServiceLinkedRole",
            on=[f"{ARN}:iam::{{account}}:role/aws-service-role/*"],
            when={"StringEquals": {"iam:AWSServiceName": ["events.amazonaws.com"]}},
        ),
    ),
    "aws:cloudwatch/dashboard:Dashboard": (
        read("cloudwatch:GetDashboard", on=[DASHBOARD]),
        write("cloudwatch:PutDashboard", "cloudwatch:DeleteDashboards", on=[DASHBOARD]),
    ),
    "aws:sns/topic:Topic": (
        read("sns:GetTopicAttributes", "sns:ListTagsForResource", on=[TOPIC]),
        write(
            "sns:CreateTopic",
            "sns:DeleteTopic",
            "sns:SetTopicAttributes",
            "sns:TagResource",
            "sns:UntagResource",
            on=[TOPIC],
        ),
    ),
    "aws:sns/topicSubscription:TopicSubscription": (
        read("sns:GetSubscriptionAttributes", "sns:ListSubscriptionsByTopic", on=[TOPIC]),
        write("sns:Subscribe", on=[TOPIC]),
        Grant(("sns:GetSubscriptionAttributes",), condition=THIS_REGION),
        write("sns:Unsubscribe", "sns:SetSubscriptionAttributes", when=THIS_REGION),
    ),
    # The topic's policy lets CloudWatch publish (infra/monitoring.py): one attribute of the topic.
    "aws:sns/topicPolicy:TopicPolicy": (
        read("sns:GetTopicAttributes", on=[TOPIC]),
        write("sns:SetTopicAttributes", on=[TOPIC]),
    ),
    # A key the program may make for the topic: created tagged, then changed only while tagged.
    "aws:kms/key:Key": (
        read(
            "kms:DescribeKey",
            "kms:GetKeyPolicy",
            "kms:GetKeyRotationStatus",
            "kms:ListResourceTags",
            on=[KMS_KEYS],
        ),
        write("kms:CreateKey", when=CREATED_TAGGED),
        write(
            "kms:PutKeyPolicy",
            "kms:EnableKeyRotation",
            "kms:ScheduleKeyDeletion",
            "kms:TagResource",
            "kms:UntagResource",
            on=[KMS_KEYS],
            when=TAGGED,
        ),
    ),
    "aws:kms/alias:Alias": (
        read("kms:ListAliases"),
        write(
            "kms:CreateAlias",
            "kms:UpdateAlias",
            "kms:DeleteAlias",
            on=[f"{ARN}:kms:{{region}}:{{account}}:alias/{{prefix}}-*"],
        ),
        # An alias names a key: the call is checked against both, and the key must be the stack's.
        write("kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias", on=[KMS_KEYS], when=TAGGED),
    ),
    # --- the server's identity
    "aws:iam/role:Role": (
        read(
            "iam:GetRole",
            "iam:ListRolePolicies",
            "iam:ListAttachedRolePolicies",
            "iam:ListInstanceProfilesForRole",
            on=[ROLE],
        ),
        write("iam:CreateRole", "iam:PutRolePermissionsBoundary", on=[ROLE], when=WITH_BOUNDARY),
        # By path only: IAM lists no iam:PermissionsBoundary for tagging, and parliament's (older)
        # copy of the reference none for these three either, so a condition on it here would be
        # one reference against the other. A role under the path without the boundary cannot be
        # made from CI (CreateRole and PutRolePermissionsBoundary need it; guard_rails_policy).
        write(
            "iam:DeleteRole",
            "iam:UpdateRole",
            "iam:UpdateAssumeRolePolicy",
            "iam:TagRole",
            "iam:UntagRole",
            on=[ROLE],
        ),
    ),
    "aws:iam/rolePolicy:RolePolicy": (
        read("iam:GetRolePolicy", on=[ROLE]),
        write("iam:PutRolePolicy", "iam:DeleteRolePolicy", on=[ROLE], when=WITH_BOUNDARY),
    ),
    # Only the one AWS-managed policy the server uses may be attached (no admin-like policy, ever).
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": (
        read("iam:ListAttachedRolePolicies", on=[ROLE]),
        write(
            "iam:AttachRolePolicy",
            "iam:DetachRolePolicy",
            on=[ROLE],
            when={
                "ArnEquals": {
                    "iam:PolicyARN": ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"],
                    **WITH_BOUNDARY["ArnEquals"],
                }
            },
        ),
    ),
    "aws:iam/instanceProfile:InstanceProfile": (
        read("iam:GetInstanceProfile", on=[INSTANCE_PROFILE]),
        write(
            "iam:CreateInstanceProfile",
            "iam:DeleteInstanceProfile",
            "iam:AddRoleToInstanceProfile",
            "iam:RemoveRoleFromInstanceProfile",
            "iam:TagInstanceProfile",
            "iam:UntagInstanceProfile",
            on=[INSTANCE_PROFILE],
        ),
        # "The caller of this operation must be granted the PassRole permission on the IAM role"
        # (IAM API Reference, AddRoleToInstanceProfile).
        PASS_SERVER_ROLE,
    ),
    # --- network (EC2 ARNs hold ids: tags scope every write)
    "aws:ec2/vpc:Vpc": (
        read("ec2:DescribeVpcAttribute", on=[VPCS]),
        read(
            "ec2:DescribeVpcs",
            "ec2:DescribeNetworkAcls",
            "ec2:DescribeSecurityGroups",
        ),
        *ec2_create("ec2:CreateVpc"),
        ec2_change("ec2:ModifyVpcAttribute", "ec2:DeleteVpc"),
        *EC2_TAGS,
    ),
    "aws:ec2/internetGateway:InternetGateway": (
        read("ec2:DescribeInternetGateways"),
        *ec2_create("ec2:CreateInternetGateway"),
        ec2_change("ec2:AttachInternetGateway", "ec2:DetachInternetGateway", "ec2:DeleteInternetGateway"),
    ),
    "aws:ec2/routeTable:RouteTable": (
        read("ec2:DescribeRouteTables"),
        *ec2_create("ec2:CreateRouteTable"),
        ec2_change("ec2:CreateRoute", "ec2:ReplaceRoute", "ec2:DeleteRoute", "ec2:DeleteRouteTable"),
    ),
    "aws:ec2/subnet:Subnet": (
        read("ec2:DescribeSubnets"),
        *ec2_create("ec2:CreateSubnet"),
        ec2_change("ec2:ModifySubnetAttribute", "ec2:DeleteSubnet"),
    ),
    "aws:ec2/routeTableAssociation:RouteTableAssociation": (
        read("ec2:DescribeRouteTables"),
        ec2_change(
            "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable", "ec2:ReplaceRouteTableAssociation"
        ),
    ),
    "aws:ec2/securityGroup:SecurityGroup": (
        read("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules", "ec2:DescribeNetworkInterfaces"),
        *ec2_create("ec2:CreateSecurityGroup"),
        ec2_change(
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:AuthorizeSecurityGroupEgress",
            "ec2:RevokeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupEgress",
            "ec2:DeleteSecurityGroup",
        ),
    ),
    # Issue 14: the VPC's default group, adopted and emptied.
    "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup": (
        read("ec2:DescribeSecurityGroups", "ec2:DescribeSecurityGroupRules"),
        # AWS makes that group untagged, and a tag-on-request grant would let the role adopt any
        # group in the account, so the role only changes it once tagged: the first `up` after the
        # group joins the program is run by an administrator (docs/ci-cd.md).
        ec2_change("ec2:RevokeSecurityGroupIngress", "ec2:RevokeSecurityGroupEgress"),
    ),
    "aws:ec2/vpcEndpoint:VpcEndpoint": (
        read("ec2:DescribeVpcEndpoints", "ec2:DescribePrefixLists", "ec2:DescribeVpcEndpointServices"),
        *ec2_create("ec2:CreateVpcEndpoint"),
        ec2_change("ec2:ModifyVpcEndpoint", "ec2:DeleteVpcEndpoints"),
        # The interface endpoints' private DNS names live in an AWS-managed private zone.
        write("route53:AssociateVPCWithHostedZone", on=[HOSTED_ZONES]),
    ),
    # Issue 14: flow logs into a log group, written by their own role.
    "aws:ec2/flowLog:FlowLog": (
        read("ec2:DescribeFlowLogs"),
        *ec2_create("ec2:CreateFlowLogs"),
        ec2_change("ec2:DeleteFlowLogs"),
        write("iam:PassRole", on=[ROLE], when=passed_to("vpc-flow-logs.amazonaws.com")),
    ),
    # --- the single server
    "aws:ec2/instance:Instance": (
        read("ec2:DescribeInstanceAttribute", on=[EC2_INSTANCES]),
        read(
            "ec2:DescribeInstances",
            "ec2:DescribeInstanceTypes",
            "ec2:DescribeInstanceCreditSpecifications",
            "ec2:DescribeVolumes",
            "ec2:DescribeImages",
            "ec2:DescribeTags",
        ),
        *RUN_INSTANCES,
        ec2_change(
            "ec2:TerminateInstances",
            "ec2:StopInstances",
            "ec2:StartInstances",
            "ec2:ModifyInstanceAttribute",
            "ec2:ModifyInstanceMetadataOptions",
            "ec2:ModifyVolume",
            "ec2:AssociateIamInstanceProfile",
            "ec2:ReplaceIamInstanceProfileAssociation",
        ),
        PASS_SERVER_ROLE,
    ),
    "aws:ec2/eip:Eip": (
        read("ec2:DescribeAddresses", "ec2:DescribeAddressesAttribute"),
        *ec2_create("ec2:AllocateAddress"),
        ec2_change("ec2:ReleaseAddress"),
    ),
    "aws:ec2/eipAssociation:EipAssociation": (
        read("ec2:DescribeAddresses"),
        ec2_change("ec2:AssociateAddress", "ec2:DisassociateAddress"),
    ),
    # --- the fleet
    "aws:ec2/launchTemplate:LaunchTemplate": (
        read("ec2:DescribeLaunchTemplates", "ec2:DescribeLaunchTemplateVersions"),
        *ec2_create("ec2:CreateLaunchTemplate"),
        ec2_change(
            "ec2:CreateLaunchTemplateVersion",
            "ec2:ModifyLaunchTemplate",
            "ec2:DeleteLaunchTemplate",
            "ec2:DeleteLaunchTemplateVersions",
        ),
        PASS_SERVER_ROLE,
    ),
    "aws:autoscaling/group:Group": (
        read(
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeInstanceRefreshes",
            "autoscaling:DescribeScalingActivities",
            "autoscaling:DescribeLoadBalancerTargetGroups",
            "autoscaling:DescribeTrafficSources",
        ),
        write(
            "autoscaling:CreateAutoScalingGroup",
            "autoscaling:UpdateAutoScalingGroup",
            "autoscaling:DeleteAutoScalingGroup",
            "autoscaling:StartInstanceRefresh",
            "autoscaling:CancelInstanceRefresh",
            "autoscaling:RollbackInstanceRefresh",
            "autoscaling:AttachLoadBalancerTargetGroups",
            "autoscaling:DetachLoadBalancerTargetGroups",
            "autoscaling:SetInstanceProtection",
            "autoscaling:CreateOrUpdateTags",
            "autoscaling:DeleteTags",
            on=[ASG],
        ),
        # The group launches from the template as the caller: RunInstances with the server role.
        *RUN_INSTANCES,
        PASS_SERVER_ROLE,
        # The first group (and load balancer) in an account makes AWS's service-linked role.
        write(
            "iam:CreateServiceLinkedRole",
            on=[f"{ARN}:iam::{{account}}:role/aws-service-role/*"],
            when={
                "StringEquals": {
                    "iam:AWSServiceName": ["autoscaling.amazonaws.com", "elasticloadbalancing.amazonaws.com"]
                }
            },
        ),
    ),
    "aws:autoscaling/policy:Policy": (
        read("autoscaling:DescribePolicies"),
        write("autoscaling:PutScalingPolicy", "autoscaling:DeletePolicy", on=[ASG]),
    ),
    "aws:lb/loadBalancer:LoadBalancer": (
        read(
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeLoadBalancerAttributes",
            "elasticloadbalancing:DescribeTags",
        ),
        write(
            "elasticloadbalancing:CreateLoadBalancer",
            "elasticloadbalancing:DeleteLoadBalancer",
            "elasticloadbalancing:ModifyLoadBalancerAttributes",
            "elasticloadbalancing:SetSecurityGroups",
            "elasticloadbalancing:SetSubnets",
            "elasticloadbalancing:AddTags",
            "elasticloadbalancing:RemoveTags",
            on=ELB,
        ),
    ),
    "aws:lb/targetGroup:TargetGroup": (
        read(
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetGroupAttributes",
            "elasticloadbalancing:DescribeTargetHealth",
        ),
        write(
            "elasticloadbalancing:CreateTargetGroup",
            "elasticloadbalancing:DeleteTargetGroup",
            "elasticloadbalancing:ModifyTargetGroup",
            "elasticloadbalancing:ModifyTargetGroupAttributes",
            "elasticloadbalancing:AddTags",
            "elasticloadbalancing:RemoveTags",
            on=ELB,
        ),
    ),
    "aws:lb/listener:Listener": (
        read(
            "elasticloadbalancing:DescribeListeners",
            "elasticloadbalancing:DescribeListenerAttributes",
            "elasticloadbalancing:DescribeRules",
        ),
        write(
            "elasticloadbalancing:CreateListener",
            "elasticloadbalancing:DeleteListener",
            "elasticloadbalancing:ModifyListener",
            "elasticloadbalancing:AddTags",
            "elasticloadbalancing:RemoveTags",
            on=ELB,
        ),
    ),
    # --- HTTPS (fleet with a domain)
    "aws:acm/certificate:Certificate": (
        read("acm:DescribeCertificate", "acm:ListTagsForCertificate", on=[CERTIFICATES]),
        write("acm:RequestCertificate", when=CREATED_TAGGED),
        write(
            "acm:DeleteCertificate",
            "acm:AddTagsToCertificate",
            "acm:RemoveTagsFromCertificate",
            on=[CERTIFICATES],
            when=TAGGED,
        ),
    ),
    "aws:acm/certificateValidation:CertificateValidation": (
        read("acm:DescribeCertificate", on=[CERTIFICATES]),
    ),
    "aws:route53/record:Record": (
        read(
            "route53:GetHostedZone",
            "route53:ListResourceRecordSets",
            "route53:GetChange",
            on=[HOSTED_ZONES, f"{ARN}:route53:::change/*"],
        ),
        write("route53:ChangeResourceRecordSets", on=[CONFIGURED_ZONE]),
    ),
    # --- dynamic resources: the boto3 calls their providers make, with the role's credentials.
    # Issue 13: the fleet's wait for its instance refresh. Issue 14: the readiness gate (a command
    # on the server by Session Manager). Every `pulumi.dynamic.Resource` subclass registers this
    # token unless it passes `module=` and `name=` (pulumi/dynamic/dynamic.py, __init_subclass__),
    # which gives it `pulumi-python:dynamic/<module>:<name>` and so an entry of its own here.
    "pulumi-python:dynamic:Resource": (
        read(
            "autoscaling:DescribeInstanceRefreshes",
            "autoscaling:DescribeAutoScalingGroups",
            "ec2:DescribeInstances",
            "ssm:GetCommandInvocation",
            "ssm:ListCommandInvocations",
        ),
        write("ssm:SendCommand", on=[RUN_SHELL_DOCUMENT]),
        # The gate's boot log when a server does not come up (infra/readiness.py console_tail): the
        # deploy role's only, on the stack's instances.
        write("ec2:GetConsoleOutput", on=[EC2_INSTANCES], when=TAGGED),
        write("ssm:SendCommand", on=[EC2_INSTANCES], when=TAGGED),
    ),
}

# Data sources the program calls (aws.*.get_*): they run in preview as in up.
INVOKES: dict[str, tuple[Grant, ...]] = {
    "aws:ssm/getParameter:getParameter": (read("ssm:GetParameter", on=[AL2023_PARAMETERS]),),
    "aws:ecr/getAuthorizationToken:getAuthorizationToken": (read("ecr:GetAuthorizationToken"),),
    "aws:ecr/getImage:getImage": (read("ecr:DescribeImages", on=[ECR_REPO]),),
    "aws:route53/getZone:getZone": (
        read(
            "route53:ListHostedZones",
            "route53:ListHostedZonesByName",
        ),
        read("route53:GetHostedZone", "route53:ListTagsForResource", on=[HOSTED_ZONES]),
    ),
    "aws:index/getAvailabilityZones:getAvailabilityZones": (read("ec2:DescribeAvailabilityZones"),),
    "aws:index/getCallerIdentity:getCallerIdentity": (),  # sts:GetCallerIdentity needs no permission
    "aws:index/getRegion:getRegion": (),  # answered by the provider from its configuration
}


def state_grants() -> tuple[Grant, ...]:
    """The stack's state: objects under .pulumi/ in the state bucket, and its secrets key."""
    objects = f"{ARN}:s3:::{{bucket}}/{STATE_PREFIX}*"
    return (
        read("s3:ListBucket", "s3:GetBucketVersioning", on=[f"{ARN}:s3:::{{bucket}}"]),
        read("s3:GetObject", on=[objects]),
        read("kms:Decrypt", "kms:DescribeKey", on=["{key_arn}"]),
        write("s3:PutObject", "s3:DeleteObject", on=[objects]),
    )


@dataclass(frozen=True)
class Scope:
    """What the templates are filled with for one account."""

    account: str
    region: str
    bucket: str
    key_arn: str
    prefix: str = NAME_PREFIX
    # The Route 53 zones the stacks are configured with (hostedZone), by id: the only ones whose
    # records the deploy role may change. None configured: no record may be changed.
    hosted_zones: tuple[str, ...] = ()

    def fill_all(self, template: str) -> list[str]:
        """A template with this account's values; one per configured zone for a zone template."""
        if "{hosted_zone}" in template:
            return [self.fill(template.replace("{hosted_zone}", zone)) for zone in self.hosted_zones]
        return [self.fill(template)]

    def fill(self, template: str) -> str:
        """One ARN template with this account's values."""
        # Plain replacement, not str.format: conditions are filled as JSON text, braces and all.
        values = {"account": self.account, "region": self.region, "bucket": self.bucket}
        values |= {"key_arn": self.key_arn, "prefix": self.prefix}
        for name, value in values.items():
            template = template.replace("{" + name + "}", value)
        return template


def _grants(types: Iterable[str] | None) -> list[Grant]:
    chosen = RESOURCE_TYPES if types is None else {t: RESOURCE_TYPES[t] for t in types}
    grants = [g for entry in chosen.values() for g in entry]
    grants += [g for entry in INVOKES.values() for g in entry]
    return grants + list(state_grants())


def _document(grants: Iterable[Grant], scope: Scope) -> dict[str, Any]:
    # One statement per distinct (resources, condition): the actions of every grant sharing them.
    merged: dict[str, tuple[list[str], dict[str, Any], set[str]]] = {}
    for grant in grants:
        resources = sorted({arn for r in grant.resources for arn in scope.fill_all(r)})
        if not resources:
            continue  # a zone grant with no zone configured
        condition = json.loads(scope.fill(json.dumps(grant.condition, sort_keys=True)))
        key = json.dumps([resources, condition], sort_keys=True)
        merged.setdefault(key, (resources, condition, set()))[2].update(grant.actions)
    statements = []
    for key in sorted(merged):
        resources, condition, actions = merged[key]
        # No Sid: optional, and every character counts against the role's 10,240 (IAM quotas).
        statement: dict[str, Any] = {
            "Effect": "Allow",
            "Action": sorted(actions),
            "Resource": resources,
        }
        if condition:
            statement["Condition"] = condition
        statements.append(statement)
    return {"Version": "2012-10-17", "Statement": statements}


def read_policy(scope: Scope, types: Iterable[str] | None = None) -> dict[str, Any]:
    """Both roles' reads: describe/list/get of what the stack holds, its state objects, decrypt.

    It is all the preview role has. A DIY backend's preview takes no lock (pulumi/pulumi#8642, merged
    December 2021, "Allow preview on locked stack": the filestate backend no longer locks for a
    preview), so it needs no s3:PutObject, not even for lock files. Kept as a managed policy
    (IAM's limit: 6,144 characters) so the deploy role's inline one holds only writes.

    Args:
        scope: The account, region, state bucket and key the ARNs name.
        types: Only these resource types (default: every type in the table).

    Returns:
        The policy document.
    """
    return _document([g for g in _grants(types) if not g.write], scope)


def deploy_policy(scope: Scope, types: Iterable[str] | None = None) -> dict[str, Any]:
    """The deploy role's own policy: the writes `pulumi up` and destroy of either mode call.

    With `read_policy` beside it, that is everything the deploy needs. A role's inline policies may
    hold 10,240 characters in all (IAM quotas).

    Args:
        scope: As for read_policy.
        types: As for read_policy.

    Returns:
        The policy document.
    """
    return _document([g for g in _grants(types) if g.write], scope)


# What the state bucket's history rests on: none of it may change from CI (the program imports
# these settings, never writes them; the bootstrap makes them).
STATE_BUCKET_GUARDED = (
    "s3:DeleteBucket",
    "s3:DeleteBucketPolicy",
    "s3:DeleteObjectVersion",
    "s3:PutBucketObjectLockConfiguration",
    "s3:PutBucketOwnershipControls",
    "s3:PutBucketPolicy",
    "s3:PutBucketPublicAccessBlock",
    "s3:PutBucketVersioning",
    "s3:PutEncryptionConfiguration",
    "s3:PutLifecycleConfiguration",
    "s3:PutReplicationConfiguration",
)
# What the deploy role may still do with the secrets key: decrypt and encrypt stack secrets.
SECRETS_KEY_USES = ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey")


def ci_identities(scope: Scope) -> list[str]:
    """The ARNs of everything that makes up CI's access: its roles, their policies, the boundary and
    GitHub's OIDC provider."""
    iam = f"{ARN}:iam::{scope.account}"
    return [
        *(f"{iam}:role/{name}" for name in (DEPLOY_ROLE, PREVIEW_ROLE, CI_HELPER_ROLE)),
        f"{iam}:policy/{READ_POLICY}",
        f"{iam}:policy/{GUARD_RAILS_POLICY}",
        f"{iam}:policy/{PERMISSIONS_BOUNDARY_POLICY}",
        f"{iam}:oidc-provider/{GITHUB_OIDC_HOST}",
    ]


def guard_rails_policy(scope: Scope) -> dict[str, Any]:
    """Explicit Denies, a managed policy on every CI role: they hold whatever an Allow says, now or
    after a later widening (IAM: an explicit Deny in any policy wins).

    - CI's roles, policies, boundary and OIDC provider: no IAM action at all.
    - No role may be created, or get a boundary, other than the program's boundary (the key is
      absent from a CreateRole without one, and a negated operator is then true: denied).
    - No boundary may be removed.
    - The secrets key: nothing but its use; its alias: never re-pointed or deleted.
    - The state bucket: its settings and object versions, as STATE_BUCKET_GUARDED.
    """
    boundary = scope.fill(BOUNDARY)
    region = f"{ARN}:kms:{scope.region}:{scope.account}"
    statements: list[dict[str, Any]] = [
        {"Effect": "Deny", "Action": ["iam:*"], "Resource": ci_identities(scope)},
        {
            "Effect": "Deny",
            "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
            "Resource": ["*"],
            "Condition": {"ArnNotEquals": {"iam:PermissionsBoundary": boundary}},
        },
        {"Effect": "Deny", "Action": ["iam:DeleteRolePermissionsBoundary"], "Resource": ["*"]},
        {"Effect": "Deny", "NotAction": list(SECRETS_KEY_USES), "Resource": [scope.key_arn]},
        {
            "Effect": "Deny",
            "Action": ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
            "Resource": [f"{region}:{KMS_ALIAS}"],
        },
        {
            "Effect": "Deny",
            "Action": list(STATE_BUCKET_GUARDED),
            "Resource": [f"{ARN}:s3:::{scope.bucket}", f"{ARN}:s3:::{scope.bucket}/*"],
        },
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def boundary_policy(scope: Scope) -> dict[str, Any]:
    """The permissions boundary of every role the program makes: the most any of them may ever do.

    The server pulls the stack's images, writes the stack's log groups and talks to Session Manager
    (the actions of AWS's AmazonSSMManagedInstanceCore, with its parameter reads narrowed to the
    project's); the flow-log role writes the stack's log groups. A role the deploy role makes can do
    no more than this, whatever policy it is given: no IAM, no KMS, no S3, no EC2 changes.
    """
    logs = f"{ARN}:logs:{scope.region}:{scope.account}:log-group:{scope.prefix}-*"
    ssm_core = [
        "ec2messages:AcknowledgeMessage",
        "ec2messages:DeleteMessage",
        "ec2messages:FailMessage",
        "ec2messages:GetEndpoint",
        "ec2messages:GetMessages",
        "ec2messages:SendReply",
        "ssm:DescribeAssociation",
        "ssm:DescribeDocument",
        "ssm:GetDeployablePatchSnapshotForInstance",
        "ssm:GetDocument",
        "ssm:GetManifest",
        "ssm:ListAssociations",
        "ssm:ListInstanceAssociations",
        "ssm:PutComplianceItems",
        "ssm:PutConfigurePackageResult",
        "ssm:PutInventory",
        "ssm:UpdateAssociationStatus",
        "ssm:UpdateInstanceAssociationStatus",
        "ssm:UpdateInstanceInformation",
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    ]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ecr:GetAuthorizationToken"], "Resource": ["*"]},
            {"Effect": "Allow", "Action": list(ECR_PULL), "Resource": [scope.fill(ECR_REPO)]},
            {
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                "Resource": [logs, f"{logs}:log-stream:*"],
            },
            {"Effect": "Allow", "Action": [*ssm_core, "logs:DescribeLogGroups"], "Resource": ["*"]},
            {
                "Effect": "Allow",
                "Action": ["ssm:GetParameter", "ssm:GetParameters"],
                "Resource": [f"{ARN}:ssm:{scope.region}:{scope.account}:parameter/{scope.prefix}-*"],
            },
        ],
    }


def ci_helper_policy(scope: Scope) -> dict[str, Any]:
    """The CI helper role's only permissions, for two main-branch jobs outside `production`.

    The smoke job admits its runner's address on the stack's runner-facing security group for one
    test and removes it (scripts/runner_access.py), and ami-update reads AWS's public AL2023 AMI
    parameter (scripts/pin_ami.py). Nothing else: it cannot change the stack, read its state or
    decrypt. Only the group tagged RUNNER_ACCESS_TAG: the app's (single) or the load balancer's
    (fleet). Which port and CIDR the rule names, IAM cannot bound: AuthorizeSecurityGroupIngress has
    no condition key for them (Service Authorization Reference: its keys are the group's tags,
    ec2:Vpc, ec2:SecurityGroupID and the rule's own tags). What remains is a rule on that one group,
    which already admits the app's port to the world by default (allowedCidrs) and is re-declared
    by the next `pulumi up`.
    """
    grants = [
        write(
            "ec2:AuthorizeSecurityGroupIngress",
            "ec2:RevokeSecurityGroupIngress",
            on=[f"{ARN}:ec2:{{region}}:{{account}}:security-group/*"],
            when={"StringEquals": {f"aws:ResourceTag/{TAG_KEY}": TAG_VALUE, **RUNNER_ACCESS_CONDITION}},
        ),
        read("ec2:DescribeSecurityGroupRules"),
        read("ssm:GetParameter", on=[AL2023_PARAMETERS]),
    ]
    return _document(grants, scope)


def trust_policy(account: str, github_repo: str, subject: str) -> dict[str, Any]:
    """Who may assume a role: GitHub's OIDC tokens for one repository and one `sub`, audience pinned.

    Args:
        account: The AWS account id.
        github_repo: OWNER/REPO.
        subject: What follows `repo:OWNER/REPO:` in the token's `sub` claim.

    Returns:
        The trust (assume-role) policy document.
    """
    host = GITHUB_OIDC_HOST
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"{ARN}:iam::{account}:oidc-provider/{host}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:aud": OIDC_AUDIENCE,
                        f"{host}:sub": f"repo:{github_repo}:{subject}",
                    }
                },
            }
        ],
    }
