"""The server's IAM identity: pull one repository, write one log group, be reachable by Session Manager."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.tags import PROGRAM_ROLE_PATH, boundary_arn

SSM_CORE_POLICY = "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"

# What `docker pull` from ECR needs, and no more.
ECR_PULL_ACTIONS = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
# What Docker's awslogs driver needs to write into an existing group.
LOG_WRITE_ACTIONS = ["logs:CreateLogStream", "logs:PutLogEvents"]


@dataclass
class ServerIdentityArgs:
    """Arguments for ServerIdentity.

    Attributes:
        repository_arn: The one ECR repository the server may pull from.
        log_group_arn: The one log group it may write to.
        tags: Tags for the role and the instance profile.
    """

    repository_arn: pulumi.Input[str]
    log_group_arn: pulumi.Input[str]
    tags: dict[str, str]


def server_policy(repository_arn: str, log_group_arn: str) -> str:
    """The inline policy document: least privilege for pulling the image and shipping its logs.

    Args:
        repository_arn: ARN of the ECR repository.
        log_group_arn: ARN of the log group (with or without the trailing ``:*``).

    Returns:
        The policy as JSON.
    """
    group = log_group_arn.removesuffix(":*")
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                # GetAuthorizationToken has no resource-level permissions: AWS only accepts "*" here.
                {
                    "Sid": "EcrLogin",
                    "Effect": "Allow",
                    "Action": ["ecr:GetAuthorizationToken"],
                    "Resource": "*",
                },
                {"Sid": "EcrPull", "Effect": "Allow", "Action": ECR_PULL_ACTIONS, "Resource": repository_arn},
                {
                    "Sid": "WriteAppLogs",
                    "Effect": "Allow",
                    "Action": LOG_WRITE_ACTIONS,
                    "Resource": [group, f"{group}:log-stream:*"],
                },
            ],
        }
    )


def program_role(
    name: str, assume_role_policy: pulumi.Input[str], tags: dict[str, str], opts: pulumi.ResourceOptions
) -> aws.iam.Role:
    """A role of the program: under PROGRAM_ROLE_PATH, capped by the permissions boundary.

    A changed path replaces the role (an IAM role cannot move); its auto-name keeps the new one
    apart from the old until Pulumi deletes that at the end of the `up`.
    """
    account = aws.get_caller_identity_output().account_id
    return aws.iam.Role(
        name,
        assume_role_policy=assume_role_policy,
        path=PROGRAM_ROLE_PATH,
        permissions_boundary=account.apply(boundary_arn),
        tags=tags,
        opts=opts,
    )


class ServerIdentity(pulumi.ComponentResource):
    """Role, inline least-privilege policy, SSM core attachment and the instance profile."""

    def __init__(
        self, name: str, args: ServerIdentityArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("cali:aws:ServerIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        assume = {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}
            ],
        }
        self.role = program_role(f"{name}-role", json.dumps(assume), args.tags, child)
        aws.iam.RolePolicy(
            f"{name}-pull-and-log",
            role=self.role.id,
            policy=pulumi.Output.all(args.repository_arn, args.log_group_arn).apply(
                lambda arns: server_policy(arns[0], arns[1])
            ),
            opts=child,
        )
        # Session Manager instead of SSH: no key pair to leak, no port 22, every session logged.
        aws.iam.RolePolicyAttachment(
            f"{name}-ssm", role=self.role.name, policy_arn=SSM_CORE_POLICY, opts=child
        )
        profile = aws.iam.InstanceProfile(f"{name}-profile", role=self.role.name, tags=args.tags, opts=child)
        self.instance_profile_name: pulumi.Output[str] = profile.name
        self.role_arn: pulumi.Output[str] = self.role.arn
        self.register_outputs(
            {"instance_profile_name": self.instance_profile_name, "role_arn": self.role_arn}
        )
