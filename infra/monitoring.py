"""Alarms, the topic they notify, and a dashboard, over the metrics the service writes as EMF lines.

The namespace, metric names, dimension and the drift threshold come from service/telemetry.py, the
module the service's emitter uses, so an alarm can never watch a name the service does not write.

Facts relied on (each checked against the installed pulumi_aws docstrings, pulumi_aws/cloudwatch/
metric_alarm.py, cloudwatch/_inputs.py MetricAlarmMetricQuery*, cloudwatch/dashboard.py,
sns/topic.py, sns/topic_subscription.py, sns/topic_policy.py, kms/key.py):

* CloudWatch alarms publish to an encrypted topic only when the topic's key lets the
  cloudwatch.amazonaws.com principal use it (kms:Decrypt, kms:GenerateDataKey*); the AWS managed
  alias/aws/sns key cannot be given that, so the topic has its own key (AWS SNS developer guide,
  "sns-key-management.html#compatibility-with-aws-services").
* An email subscription stays "pending confirmation" until the address clicks the link AWS sends;
  Pulumi cannot confirm it (topic_subscription.py: email is "partially supported").
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra.release import PROJECT
from model.schema import FEATURE_NAMES
from service import telemetry

# Alarm periods and thresholds. The service writes one line a minute per worker, so 60 s periods
# always hold data under traffic; no traffic leaves them empty, which is not an error.
PERIOD_S = 60
ERROR_RATE_PERCENT = 5.0  # 5xx share of requests over 5 minutes
LATENCY_P99_MS = 250.0  # the p99 a worker reports, 5 minutes running
DRIFT_SUSTAINED_PERIODS = 30  # PSI >= PSI_DRIFT every minute for half an hour
HEALTH_PERIODS = 2  # no healthy target for two minutes


def alarm_name(stack: str, key: str) -> str:
    """The fixed name of one of the stack's alarms (or, with key "alarms", of their topic).

    Fixed rather than auto-named (`cali-errors-1a2b3c4`), so the runbooks in docs/operations.md, the
    console and the emails ("ALARM: <name>") all say the same; the stack in it keeps staging's and
    prod's apart, since an alarm's name must be unique in the account (pulumi_aws
    cloudwatch/metric_alarm.py, `name`).
    """
    return f"{PROJECT}-{stack}-{key}"


@dataclass
class MonitoringArgs:
    """Arguments for Monitoring.

    Attributes:
        region: The stack's region (the dashboard's widgets name it).
        account_arn: Any ARN of this account (e.g. the log group's); the key policy takes its account.
        alert_email: An address to subscribe to the topic; empty for none.
        tags: Tags for every taggable resource.
    """

    region: str
    account_arn: pulumi.Input[str]
    alert_email: str
    tags: dict[str, str]


class Monitoring(pulumi.ComponentResource):
    """The alarm topic (own KMS key), the service's alarms and a dashboard; fleets add a health alarm."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Monitoring", name, None, opts)
        self._name = name
        self._tags = args.tags
        child = pulumi.ResourceOptions(parent=self)
        account = pulumi.Output.from_input(args.account_arn).apply(lambda arn: arn.split(":")[4])
        key = aws.kms.Key(
            f"{name}-alarms-key",
            description="Encrypts the alarm topic; CloudWatch may use it to publish",
            enable_key_rotation=True,
            deletion_window_in_days=7,
            policy=account.apply(_key_policy),
            tags=args.tags,
            opts=child,
        )
        self.topic = aws.sns.Topic(
            f"{name}-alarms",
            name=alarm_name(pulumi.get_stack(), "alarms"),
            kms_master_key_id=key.arn,
            tags=args.tags,
            opts=child,
        )
        aws.sns.TopicPolicy(
            f"{name}-alarms-policy",
            arn=self.topic.arn,
            policy=pulumi.Output.all(self.topic.arn, account).apply(lambda v: _topic_policy(v[0], v[1])),
            opts=child,
        )
        if args.alert_email:
            aws.sns.TopicSubscription(
                f"{name}-alarms-email",
                topic=self.topic.arn,
                protocol="email",
                endpoint=args.alert_email,
                opts=child,
            )
        self.alarms: list[aws.cloudwatch.MetricAlarm] = [
            self._alarm(
                "errors",
                "More than 5% of requests answered 5xx for 5 minutes (docs/operations.md: 5xx rate)",
                comparison_operator="GreaterThanThreshold",
                threshold=ERROR_RATE_PERCENT,
                evaluation_periods=5,
                metric_queries=[
                    _metric_query("errors", telemetry.ERRORS_5XX, "Sum"),
                    _metric_query("requests", telemetry.REQUESTS, "Sum"),
                    aws.cloudwatch.MetricAlarmMetricQueryArgs(
                        id="rate",
                        expression="IF(requests > 0, 100 * errors / requests, 0)",
                        label="5xx share of requests (%)",
                        return_data=True,
                    ),
                ],
            ),
            self._alarm(
                "latency",
                f"p99 latency above {LATENCY_P99_MS:g} ms for 5 minutes (docs/operations.md: latency)",
                comparison_operator="GreaterThanThreshold",
                threshold=LATENCY_P99_MS,
                evaluation_periods=5,
                namespace=telemetry.NAMESPACE,
                metric_name=telemetry.LATENCY_P99,
                statistic="Maximum",
                period=PERIOD_S,
            ),
            self._alarm(
                "drift",
                f"A feature's PSI >= {telemetry.PSI_DRIFT} for {DRIFT_SUSTAINED_PERIODS} minutes "
                "(docs/operations.md: drift)",
                comparison_operator="GreaterThanOrEqualToThreshold",
                threshold=telemetry.PSI_DRIFT,
                evaluation_periods=DRIFT_SUSTAINED_PERIODS,
                namespace=telemetry.NAMESPACE,
                metric_name=telemetry.DRIFT_PSI_MAX,
                statistic="Maximum",
                period=PERIOD_S,
            ),
        ]
        # The service's own health, named by a fleet's instance refresh: an alarm in ALARM fails
        # the refresh, which then rolls back (infra/fleet.py, refresh_preferences).
        self.guardrail_alarm_names: list[pulumi.Output[str]] = [alarm.name for alarm in self.alarms[:2]]
        self.dashboard = aws.cloudwatch.Dashboard(
            f"{name}-dashboard",
            dashboard_name=f"{name}-{pulumi.get_stack()}",
            dashboard_body=json.dumps(dashboard_body(args.region)),
            opts=child,
        )
        self.topic_arn: pulumi.Output[str] = self.topic.arn
        self.register_outputs({"topic_arn": self.topic_arn})

    def watch_targets(
        self,
        load_balancer_suffix: pulumi.Input[str],
        target_group_suffix: pulumi.Input[str],
        after: list[pulumi.Resource] | None = None,
    ) -> None:
        """Add the fleet's alarm: no healthy target behind the load balancer (fleet mode calls this).

        Args:
            load_balancer_suffix: The balancer's ARN suffix (the metric's LoadBalancer dimension).
            target_group_suffix: The target group's ARN suffix (its TargetGroup dimension).
            after: What the alarm's update waits for: the Auto Scaling group, so that a new target
                group (appPort) is watched once its instances are healthy, not while they boot.
        """
        self.alarms.append(
            self._alarm(
                "no-healthy-target",
                "No healthy target behind the load balancer for 2 minutes (docs/operations.md: fleet)",
                comparison_operator="LessThanThreshold",
                threshold=1,
                evaluation_periods=HEALTH_PERIODS,
                namespace="AWS/ApplicationELB",
                metric_name="HealthyHostCount",
                statistic="Minimum",
                period=PERIOD_S,
                dimensions={"LoadBalancer": load_balancer_suffix, "TargetGroup": target_group_suffix},
                # no data from the load balancer means nothing reports healthy either
                treat_missing_data="breaching",
                depends_on=after or [],
            )
        )

    def _alarm(
        self, key: str, description: str, depends_on: list[pulumi.Resource] | None = None, **kwargs: object
    ) -> aws.cloudwatch.MetricAlarm:
        kwargs.setdefault("treat_missing_data", "notBreaching")  # no traffic is not an incident
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-{key}",
            name=alarm_name(pulumi.get_stack(), key),
            alarm_description=description,
            alarm_actions=[self.topic.arn],
            ok_actions=[self.topic.arn],  # say when it is over, too
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on or []),
            **kwargs,
        )


def _metric_query(query_id: str, metric: str, stat: str) -> aws.cloudwatch.MetricAlarmMetricQueryArgs:
    return aws.cloudwatch.MetricAlarmMetricQueryArgs(
        id=query_id,
        metric=aws.cloudwatch.MetricAlarmMetricQueryMetricArgs(
            namespace=telemetry.NAMESPACE, metric_name=metric, stat=stat, period=PERIOD_S
        ),
    )


def _key_policy(account: str) -> str:
    root = f"arn:aws:iam::{account}:root"
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                # the account administers the key through IAM, as the default key policy allows
                {
                    "Sid": "Account",
                    "Effect": "Allow",
                    "Principal": {"AWS": root},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    "Sid": "CloudWatchAlarms",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                },
            ],
        }
    )


def _topic_policy(topic_arn: str, account: str) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "CloudWatchAlarms",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": "sns:Publish",
                    "Resource": topic_arn,
                    "Condition": {"StringEquals": {"aws:SourceAccount": account}},
                },
            ],
        }
    )


def dashboard_body(region: str) -> dict:
    """The dashboard: requests and errors, p99 latency, and PSI per feature against the thresholds."""
    ns = telemetry.NAMESPACE

    def widget(title: str, metrics: list, y: int, x: int, annotations: dict | None = None) -> dict:
        properties = {
            "title": title,
            "region": region,
            "metrics": metrics,
            "view": "timeSeries",
            "period": PERIOD_S,
        }
        if annotations:
            properties["annotations"] = annotations
        return {"type": "metric", "x": x, "y": y, "width": 12, "height": 6, "properties": properties}

    thresholds = {
        "horizontal": [
            {"label": "warning", "value": telemetry.PSI_WARNING},
            {"label": "drift", "value": telemetry.PSI_DRIFT},
        ]
    }
    psi = [
        [ns, telemetry.DRIFT_PSI, telemetry.FEATURE_DIMENSION, f, {"stat": "Maximum"}] for f in FEATURE_NAMES
    ]
    return {
        "widgets": [
            widget(
                "Requests and 5xx",
                [[ns, telemetry.REQUESTS, {"stat": "Sum"}], [ns, telemetry.ERRORS_5XX, {"stat": "Sum"}]],
                0,
                0,
            ),
            widget("p99 latency (ms)", [[ns, telemetry.LATENCY_P99, {"stat": "Maximum"}]], 0, 12),
            widget("Drift: PSI per feature", psi, 6, 0, thresholds),
            widget(
                "Drift: largest PSI", [[ns, telemetry.DRIFT_PSI_MAX, {"stat": "Maximum"}]], 6, 12, thresholds
            ),
        ]
    }
