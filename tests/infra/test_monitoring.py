"""Alarms, their topic and the dashboard, under Pulumi's mocks, in both modes.

Every alarm notifies the topic; every metric an alarm or the dashboard reads in the service's
namespace is one the service writes (the names are imported from service.telemetry, the module the
service's emitter uses); the topic is encrypted with a key CloudWatch may use; the dashboard exists.
"""

from __future__ import annotations

import json

import pytest

from infra.config import StackConfigError
from model.schema import FEATURE_NAMES
from service import telemetry
from tests.infra.conftest import Deployment, cli_config, run_program

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
TOPIC = "aws:sns/topic:Topic"
DASHBOARD = "aws:cloudwatch/dashboard:Dashboard"
SUBSCRIPTION = "aws:sns/topicSubscription:TopicSubscription"
KEY = "aws:kms/key:Key"
# What the service writes (service/telemetry.py emf_lines), by metric name.
EMITTED = {
    telemetry.REQUESTS,
    telemetry.ERRORS_5XX,
    telemetry.LATENCY_P99,
    telemetry.DRIFT_PSI_MAX,
    telemetry.DRIFT_PSI,
}


@pytest.fixture(scope="module", params=["single", "fleet"])
def deployment(request, prod: Deployment, fleet: Deployment) -> Deployment:
    """The prod stack in each mode."""
    return prod if request.param == "single" else fleet


def monitoring_alarms(deployment: Deployment) -> list:
    """The alarms of the Monitoring component (the server's own recovery alarm also acts)."""
    return [a for a in deployment.of_type(ALARM) if "cali:aws:Monitoring$" in a.urn]


def _metrics_of(alarm) -> list[tuple[str, str]]:
    """(namespace, metric name) of everything an alarm reads."""
    if alarm.inputs.get("metricName"):
        return [(alarm.inputs["namespace"], alarm.inputs["metricName"])]
    return [
        (q["metric"]["namespace"], q["metric"]["metricName"])
        for q in alarm.inputs["metricQueries"]
        if q.get("metric")
    ]


def test_every_alarm_notifies_the_topic(deployment: Deployment) -> None:
    topic = deployment.one(TOPIC)
    alarms = monitoring_alarms(deployment)
    assert len(alarms) == (4 if deployment.exports.get("autoscaling_group") else 3)
    for alarm in alarms:
        assert alarm.inputs["alarmActions"] == [topic.inputs["arn"]], alarm.name
        assert alarm.inputs["okActions"] == [topic.inputs["arn"]], alarm.name
    # every alarm of the stack, the server's recovery alarm (which also acts: EC2 recover) included
    for alarm in deployment.of_type(ALARM):
        assert topic.inputs["arn"] in alarm.inputs["alarmActions"], alarm.name


def test_alarms_read_only_metrics_the_service_writes(deployment: Deployment) -> None:
    for alarm in monitoring_alarms(deployment):
        for namespace, metric in _metrics_of(alarm):
            if namespace == telemetry.NAMESPACE:
                assert metric in EMITTED, (alarm.name, metric)
            else:
                assert namespace == "AWS/ApplicationELB", alarm.name  # the fleet's health, AWS's own


def test_the_service_alarms_exist_in_both_modes(deployment: Deployment) -> None:
    read = {m for a in monitoring_alarms(deployment) for _, m in _metrics_of(a)}
    assert {telemetry.ERRORS_5XX, telemetry.REQUESTS, telemetry.LATENCY_P99, telemetry.DRIFT_PSI_MAX} <= read


def test_drift_alarm_fires_at_the_shared_threshold_sustained(deployment: Deployment) -> None:
    (drift,) = [a for a in deployment.of_type(ALARM) if a.inputs.get("metricName") == telemetry.DRIFT_PSI_MAX]
    assert drift.inputs["threshold"] == telemetry.PSI_DRIFT
    assert drift.inputs["comparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert drift.inputs["evaluationPeriods"] * drift.inputs["period"] >= 30 * 60  # sustained, not one blip


def test_drift_alarm_stays_quiet_while_the_service_sends_no_psi(deployment: Deployment) -> None:
    # Below DRIFT_MIN_RECORDS the service prints no DriftPSIMax (service/telemetry.py); "notBreaching"
    # counts a missing data point as within the threshold (AWS: TreatMissingData, "Configuring how
    # CloudWatch alarms treat missing data"), so a quiet or just-restarted server cannot raise it.
    (drift,) = [a for a in deployment.of_type(ALARM) if a.inputs.get("metricName") == telemetry.DRIFT_PSI_MAX]
    assert drift.inputs["treatMissingData"] == "notBreaching"


def test_only_the_fleet_watches_healthy_targets(prod: Deployment, fleet: Deployment) -> None:
    def health(d: Deployment) -> list:
        return [a for a in d.of_type(ALARM) if a.inputs.get("metricName") == "HealthyHostCount"]

    assert health(prod) == []
    (alarm,) = health(fleet)
    assert alarm.inputs["comparisonOperator"] == "LessThanThreshold"
    assert alarm.inputs["threshold"] == 1
    assert alarm.inputs["treatMissingData"] == "breaching"
    assert set(alarm.inputs["dimensions"]) == {"LoadBalancer", "TargetGroup"}
    assert alarm.inputs["dimensions"]["TargetGroup"].startswith("targetgroup/")


def test_topic_is_encrypted_with_a_key_cloudwatch_may_use(deployment: Deployment) -> None:
    topic, key = deployment.one(TOPIC), deployment.one(KEY)
    assert topic.inputs["kmsMasterKeyId"] == key.inputs["arn"]
    assert key.inputs["enableKeyRotation"] is True
    statements = json.loads(key.inputs["policy"])["Statement"]
    (cloudwatch,) = [s for s in statements if s["Principal"] == {"Service": "cloudwatch.amazonaws.com"}]
    assert set(cloudwatch["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert "aws:SourceAccount" in cloudwatch["Condition"]["StringEquals"]


def test_dashboard_shows_requests_errors_latency_and_drift(deployment: Deployment) -> None:
    body = json.loads(deployment.one(DASHBOARD).inputs["dashboardBody"])
    shown = {m[1] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert shown == EMITTED
    namespaces = {m[0] for w in body["widgets"] for m in w["properties"]["metrics"]}
    assert namespaces == {telemetry.NAMESPACE}
    per_feature = {
        m[3] for w in body["widgets"] for m in w["properties"]["metrics"] if m[1] == telemetry.DRIFT_PSI
    }
    assert per_feature == set(FEATURE_NAMES)


def test_topic_key_and_dashboard_belong_to_the_monitoring_component(deployment: Deployment) -> None:
    (component,) = [r for r in deployment.resources if r.typ == "cali:aws:Monitoring"]
    assert component.name == "cali"
    for typ in (TOPIC, DASHBOARD, KEY):
        (resource,) = deployment.of_type(typ)
        assert resource.urn.split("::")[-2].startswith("cali:aws:Monitoring$"), resource.urn


def test_no_email_subscription_unless_configured(prod: Deployment) -> None:
    assert prod.of_type(SUBSCRIPTION) == []


def test_alert_email_subscribes_to_the_topic() -> None:
    deployment = run_program(cli_config("prod", alertEmail="oncall@example.com"))
    sub = deployment.one(SUBSCRIPTION)
    assert (sub.inputs["protocol"], sub.inputs["endpoint"]) == ("email", "oncall@example.com")
    assert sub.inputs["topic"] == deployment.one(TOPIC).inputs["arn"]


def test_a_malformed_alert_email_names_the_key() -> None:
    with pytest.raises(StackConfigError, match="alertEmail"):
        run_program(cli_config("prod", alertEmail="not an address"))


def test_alarms_and_topic_have_fixed_names_that_carry_the_stack(prod: Deployment, fleet: Deployment) -> None:
    # fixed, so the runbooks (docs/operations.md) and the emails name them alike; the stack keeps
    # staging's and prod's apart (an alarm's name is unique in the account)
    assert sorted(a.inputs["name"] for a in prod.of_type(ALARM)) == [
        "cali-housing-prod-drift",
        "cali-housing-prod-errors",
        "cali-housing-prod-latency",
        "cali-housing-prod-recover",
    ]
    assert sorted(a.inputs["name"] for a in fleet.of_type(ALARM)) == [
        "cali-housing-prod-drift",
        "cali-housing-prod-errors",
        "cali-housing-prod-latency",
        "cali-housing-prod-no-healthy-target",
    ]
    assert prod.one(TOPIC).inputs["name"] == "cali-housing-prod-alarms"
