"""Deploys that keep the site up and the hardening a scanner expects, as the program registers them.

Run under Pulumi's mocks (tests/infra/conftest.py): the readiness gate between the new instance and
the Elastic IP association, hop limit 1, EBS-optimized, the managed default security group, VPC flow
logs, and in fleet mode the idle timeout below the app's keep-alive and the access-log bucket.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from infra.readiness import READY_TIMEOUT_S, ReadinessProvider
from infra.release import content_tag, repository_name
from service.config import ConfigError, ServiceSettings
from service.timeouts import LOAD_BALANCER_IDLE_TIMEOUT_S
from tests.infra.conftest import ACCOUNT, ROOT, Deployment, cli_config, project_file, run_program

INSTANCE = "aws:ec2/instance:Instance"
GATE = "pulumi-python:dynamic:Resource"
ASSOCIATION = "aws:ec2/eipAssociation:EipAssociation"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
FLOW_LOG = "aws:ec2/flowLog:FlowLog"
BALANCER = "aws:lb/loadBalancer:LoadBalancer"
BUCKET = "aws:s3/bucket:Bucket"
REPO = repository_name("prod")


# --- single mode: the address moves only through the gate -----------------------------------------


def test_the_address_association_takes_its_instance_from_the_gate(prod: Deployment) -> None:
    gate = prod.one(GATE)
    association = prod.one(ASSOCIATION)
    assert gate.urn in association.dependencies
    assert prod.one(INSTANCE).urn not in association.dependencies  # never straight from the instance
    assert association.inputs["instanceId"] == gate.inputs["instance_id"]


def test_the_gate_waits_for_the_new_instance_on_the_app_port(prod: Deployment) -> None:
    gate, instance = prod.one(GATE), prod.one(INSTANCE)
    assert instance.urn in gate.dependencies
    assert gate.inputs["instance_id"] == "cali-instance-id"  # the mock's id for the instance
    assert gate.inputs["port"] == 80
    assert gate.inputs["timeout_s"] == READY_TIMEOUT_S == 15 * 60
    assert gate.inputs["region"] == "us-east-1"


def test_the_gate_follows_the_app_port() -> None:
    deployment = run_program(cli_config(appPort=8081))
    assert deployment.one(GATE).inputs["port"] == 8081


def test_the_old_association_goes_before_the_new_one_and_only_after_the_gate(prod: Deployment) -> None:
    # One association per address: delete-before-replace, but the gate is created first, since the
    # association's instance id is the gate's output.
    assert prod.one(ASSOCIATION).delete_before_replace
    assert not prod.one(INSTANCE).delete_before_replace  # the old server stays until `up` succeeds
    assert not prod.one(GATE).delete_before_replace


def test_a_new_instance_is_a_new_gate() -> None:
    diff = ReadinessProvider().diff(
        "id", {"instance_id": "i-old", "port": 80}, {"instance_id": "i-new", "port": 80}
    )
    assert diff.replaces == ["instance_id"]
    assert diff.delete_before_replace is False
    same = ReadinessProvider().diff(
        "id", {"instance_id": "i-1", "port": 80}, {"instance_id": "i-1", "port": 80}
    )
    assert not same.changes


def test_the_gate_provider_survives_serialization_into_a_fresh_process() -> None:
    # Pulumi stores the provider with dill and loads it in a separate process (pulumi/pulumi#7755):
    # `python -m pulumi.dynamic`, started in the program's directory (pulumi/pulumi#5455 names that
    # pwd), so the project's packages import there as they do here with -c and cwd=ROOT.
    from pulumi.dynamic.dynamic import serialize_provider

    blob = serialize_provider(ReadinessProvider())
    code = (
        "import sys, base64, dill\n"
        "p = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "d = p.diff('x', {'instance_id': 'a'}, {'instance_id': 'b'})\n"
        "print(d.replaces)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=blob,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['instance_id']"


# --- hardening in both modes ------------------------------------------------------------------------


def test_instance_and_launch_template_hop_limit_1_and_ebs_optimized(
    prod: Deployment, fleet: Deployment
) -> None:
    instance = prod.one(INSTANCE).inputs
    assert instance["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert instance["ebsOptimized"] is True
    template = fleet.one(LAUNCH_TEMPLATE).inputs
    assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert template["metadataOptions"]["httpTokens"] == "required"
    assert template["ebsOptimized"] == "true"


@pytest.mark.parametrize("mode", ["single", "fleet"])
def test_the_default_security_group_is_managed_with_no_rules(mode: str) -> None:
    deployment = run_program(cli_config(mode=mode))
    group = deployment.one("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup").inputs
    assert group["vpcId"] == deployment.one("aws:ec2/vpc:Vpc").inputs.get("id", "cali-vpc-id")
    assert group.get("ingress", []) == []
    assert group.get("egress", []) == []


def test_flow_logs_record_all_traffic_into_a_short_lived_group(prod: Deployment) -> None:
    flow = prod.one(FLOW_LOG).inputs
    group = prod.named("aws:cloudwatch/logGroup:LogGroup", "cali-flow-logs").inputs
    assert flow["vpcId"] == "cali-vpc-id"
    assert flow["trafficType"] == "ALL"
    assert flow["logDestinationType"] == "cloud-watch-logs"
    assert flow["logDestination"] == group["arn"]
    assert group["retentionInDays"] <= 14
    role = prod.named("aws:iam/role:Role", "cali-flow-logs").inputs
    (statement,) = json.loads(role["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {"Service": "vpc-flow-logs.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert flow["iamRoleArn"] == role["arn"]


def test_flow_logs_can_be_turned_off() -> None:
    deployment = run_program(cli_config(flowLogs=False))
    assert deployment.of_type(FLOW_LOG) == []
    assert [g.name for g in deployment.of_type("aws:cloudwatch/logGroup:LogGroup")] == ["cali-logs"]


# --- fleet: keep-alive and access logs --------------------------------------------------------------


def test_the_balancer_closes_idle_connections_before_the_app_does(fleet: Deployment) -> None:
    idle = fleet.one(BALANCER).inputs["idleTimeout"]
    assert idle == LOAD_BALANCER_IDLE_TIMEOUT_S
    assert ServiceSettings.from_env({}).keepalive > idle  # what gunicorn_conf sets as keepalive


def test_a_keepalive_that_would_not_outlast_the_balancer_is_refused() -> None:
    with pytest.raises(ConfigError, match="KEEPALIVE"):
        ServiceSettings.from_env({"KEEPALIVE": str(LOAD_BALANCER_IDLE_TIMEOUT_S)})
    assert ServiceSettings.from_env({"KEEPALIVE": "120"}).keepalive == 120


def test_access_logs_go_to_a_private_encrypted_expiring_bucket_of_the_stack(fleet: Deployment) -> None:
    bucket = fleet.named(BUCKET, "cali-alb-logs")
    name = bucket.inputs["bucket"]  # auto-named by Pulumi (the mock adds a suffix)
    logs = fleet.one(BALANCER).inputs["accessLogs"]
    assert logs == {"bucket": name, "prefix": "alb", "enabled": True}
    block = fleet.named("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "cali-alb-logs").inputs
    assert all(
        block[k]
        for k in ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets")
    )
    sse = fleet.named(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
        "cali-alb-logs",
    ).inputs
    assert sse["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"  # SSE-S3 only
    (rule,) = fleet.named(
        "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration", "cali-alb-logs"
    ).inputs["rules"]
    assert rule["status"] == "Enabled"
    assert 0 < rule["expiration"]["days"] <= 90
    policy = json.loads(fleet.named("aws:s3/bucketPolicy:BucketPolicy", "cali-alb-logs").inputs["policy"])
    write, tls = policy["Statement"]
    # us-east-1 predates August 2022: ELB writes as its regional account there
    assert write["Principal"] == {"AWS": "arn:aws:iam::127311923021:root"}
    assert write["Action"] == "s3:PutObject"
    assert write["Resource"] == f"arn:aws:s3:::{name}/alb/AWSLogs/{ACCOUNT}/*"
    assert tls["Effect"] == "Deny"
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    # logging is switched on only once the policy lets ELB write (it checks when enabled)
    assert (
        fleet.named("aws:s3/bucketPolicy:BucketPolicy", "cali-alb-logs").urn
        in fleet.one(BALANCER).dependencies
    )


def test_newer_regions_grant_the_log_delivery_service_principal() -> None:
    from infra.logs import access_log_bucket_policy

    (write, _tls) = json.loads(access_log_bucket_policy("b", "ap-southeast-5", ACCOUNT))["Statement"]
    assert write["Principal"] == {"Service": "logdelivery.elasticloadbalancing.amazonaws.com"}


def test_access_logs_can_be_turned_off() -> None:
    deployment = run_program(cli_config(mode="fleet", fleetAccessLogs=False))
    assert "accessLogs" not in deployment.one(BALANCER).inputs
    assert [b.name for b in deployment.of_type(BUCKET)] == ["cali-state-bucket"]


# --- which build the gate waits for: the digest this run deploys --------------------------------


def test_the_gate_waits_for_the_very_digest_the_boot_script_starts() -> None:
    pushed = "sha256:" + "5e" * 32
    run = run_program(cli_config(imageTag=""), ecr_images={(REPO, content_tag(ROOT)): pushed})
    gate, instance = run.one(GATE), run.one(INSTANCE)
    assert gate.inputs["image"].endswith(f"/{REPO}@{pushed}")
    started = re.search(r"^IMAGE=(\S+)", instance.inputs["userData"], re.MULTILINE)
    assert started is not None
    assert started[1] == gate.inputs["image"]


def test_a_rollback_is_gated_on_the_rolled_back_digest() -> None:
    earlier = "sha256:" + "cd" * 32
    gate = run_program(cli_config(imageDigest=earlier)).one(GATE)
    assert gate.inputs["image"].endswith(f"@{earlier}")


@pytest.mark.parametrize("key", ["expectModelVersion", "expectRevision"])
def test_the_runner_only_expectations_are_gone(key: str) -> None:
    # They existed only on the deploy runner's copy of the stack file, so every other preview saw
    # other gate inputs; the digest replaces them, derived the same way by every run.
    assert key not in project_file()["config"]
