"""The CloudWatch log group the container writes to."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


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
