"""Policies on what the real Pulumi program registers, run under Pulumi's mocks (no CLI, no AWS).

The module-scoped `prod` fixture runs `__main__.py` once through `@pulumi.runtime.test` and waits for
every output (`Output.all(...).apply(...)`), so each test below reads resolved inputs as a provider
would receive them.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from functools import cache

import pytest

from infra import state_hardening
from infra.server import AL2023_PARAMETER
from model.schema import example_record
from tests.infra.conftest import (
    AMI,
    DIGEST,
    PUBLIC_IP,
    REGION,
    STATE_BUCKET,
    Deployment,
    cli_config,
    run_program,
)

INSTANCE = "aws:ec2/instance:Instance"
STATE_CHILDREN = (
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls",
    "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
    "aws:s3/bucketVersioning:BucketVersioning",
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration",
    "aws:s3/bucketPolicy:BucketPolicy",
)


@cache
def accepts_tags(typ: str) -> bool:
    """Whether the pulumi_aws resource class for a type token has a `tags` argument."""
    package, module_path, class_name = typ.split(":")[0], typ.split(":")[1].split("/")[0], typ.split(":")[2]
    assert package == "aws"
    module = importlib.import_module("pulumi_aws" if module_path == "index" else f"pulumi_aws.{module_path}")
    return "tags" in inspect.signature(getattr(module, class_name)._internal_init).parameters


def test_no_ingress_except_the_app_port_and_never_ssh(prod: Deployment) -> None:
    standalone_rules = [r for r in prod.resources if "ingressRule" in r.typ or "securityGroupRule" in r.typ]
    assert standalone_rules == [], "rules outside the security group would escape this check"
    groups = prod.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert groups
    for group in groups:
        for rule in group.inputs.get("ingress", []):
            assert (rule["fromPort"], rule["toPort"], rule["protocol"]) == (80, 80, "tcp"), rule
            assert not rule["fromPort"] <= 22 <= rule["toPort"]
            assert rule["cidrBlocks"] == ["0.0.0.0/0"]


def test_ingress_follows_configured_port_and_cidrs() -> None:
    deployment = run_program(cli_config(appPort=8081, allowedCidrs=["198.51.100.0/24", "203.0.113.7/32"]))
    (rule,) = deployment.one("aws:ec2/securityGroup:SecurityGroup").inputs["ingress"]
    assert (rule["fromPort"], rule["toPort"]) == (8081, 8081)
    assert rule["cidrBlocks"] == ["198.51.100.0/24", "203.0.113.7/32"]
    assert deployment.exports["url"] == f"http://{PUBLIC_IP}:8081"
    assert re.search(r"^HOST_PORT=8081\b", deployment.one(INSTANCE).inputs["userData"], re.MULTILINE)


def test_server_has_no_ssh_key_and_requires_imdsv2_with_hop_limit_1(prod: Deployment) -> None:
    instance = prod.one(INSTANCE).inputs
    assert "keyName" not in instance
    assert instance["metadataOptions"]["httpTokens"] == "required"
    # one hop: the host's own calls reach IMDS, a process inside the container does not
    assert instance["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_root_volume_is_encrypted_gp3(prod: Deployment) -> None:
    root = prod.one(INSTANCE).inputs["rootBlockDevice"]
    assert root["encrypted"] is True
    assert root["volumeType"] == "gp3"


def test_user_data_runs_the_pushed_image_by_digest(prod: Deployment) -> None:
    # the image's own paths (found, built, rolled back) are in test_image.py
    user_data = prod.one(INSTANCE).inputs["userData"]
    assert prod.exports["image"].endswith(f"@{DIGEST}")
    assert f"IMAGE={prod.exports['image']} " in user_data
    assert ":latest" not in user_data
    assert f"awslogs-group={prod.exports['log_group']}" in user_data


def test_new_image_digest_replaces_the_server(prod: Deployment) -> None:
    assert prod.one(INSTANCE).inputs["userDataReplaceOnChange"] is True


def test_replaced_instance_keeps_its_address(prod: Deployment) -> None:
    # The EIP does not name the instance (so replacing the instance cannot replace the EIP); only
    # the association does, and it is updated in place to point at the new instance.
    eip = prod.one("aws:ec2/eip:Eip")
    assert "instance" not in eip.inputs
    assert eip.inputs["domain"] == "vpc"
    association = prod.one("aws:ec2/eipAssociation:EipAssociation")
    assert association.delete_before_replace
    association = association.inputs
    assert association["instanceId"] == "cali-instance-id"
    assert association["allocationId"] == "eipalloc-0123456789abcdef0"
    assert prod.exports["public_ip"] == PUBLIC_IP


def test_ami_comes_from_the_public_ssm_parameter_and_a_new_release_does_not_replace_the_server(
    prod: Deployment,
) -> None:
    assert ("aws:ssm/getParameter:getParameter", {"name": AL2023_PARAMETER}) in prod.calls
    instance = prod.one(INSTANCE)
    assert instance.inputs["ami"] == AMI
    assert instance.ignore_changes == ["ami"]


def test_pinned_ami_is_used_and_a_change_of_it_rolls_the_server() -> None:
    deployment = run_program(cli_config(ami="ami-0fedcba9876543210"))
    instance = deployment.one(INSTANCE)
    assert instance.inputs["ami"] == "ami-0fedcba9876543210"
    assert instance.ignore_changes == []
    assert not [c for c in deployment.calls if c[0] == "aws:ssm/getParameter:getParameter"]


def test_instance_type_and_root_size_come_from_config() -> None:
    deployment = run_program(cli_config(instanceType="m6i.large", rootVolumeGb=32))
    instance = deployment.one(INSTANCE).inputs
    assert instance["instanceType"] == "m6i.large"
    assert instance["rootBlockDevice"]["volumeSize"] == 32


def test_recovery_alarm_recovers_the_instance_on_system_check_failure(prod: Deployment) -> None:
    # the monitoring alarms (tests/infra/test_monitoring.py) stand beside it
    (alarm,) = [
        a.inputs for a in prod.of_type("aws:cloudwatch/metricAlarm:MetricAlarm") if a.name == "cali-recover"
    ]
    assert alarm["metricName"] == "StatusCheckFailed_System"
    assert alarm["dimensions"] == {"InstanceId": "cali-instance-id"}
    recover, *notify = alarm["alarmActions"]
    assert recover == f"arn:aws:automate:{REGION}:ec2:recover"
    (topic,) = prod.of_type("aws:sns/topic:Topic")
    assert notify == [topic.inputs["arn"]]  # and the operator hears of it


def test_state_bucket_is_adopted_not_created(prod: Deployment) -> None:
    bucket = prod.one("aws:s3/bucket:Bucket")
    assert bucket.import_id == STATE_BUCKET
    assert bucket.inputs["bucket"] == STATE_BUCKET
    # The import only succeeds when the inputs match what the bootstrap made.
    assert bucket.inputs["tags"] == state_hardening.STATE_BUCKET_TAGS
    assert prod.exports["state_bucket"] == STATE_BUCKET


def test_state_bucket_is_versioned_encrypted_private_and_tls_only(prod: Deployment) -> None:
    versioning = prod.one("aws:s3/bucketVersioning:BucketVersioning").inputs
    assert versioning["versioningConfiguration"] == {"status": "Enabled"}
    (sse,) = prod.one(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    ).inputs["rules"]
    assert sse["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    block = prod.one("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock").inputs
    for flag in ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets"):
        assert block[flag] is True, flag
    ownership = prod.one("aws:s3/bucketOwnershipControls:BucketOwnershipControls").inputs
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}
    policy = json.loads(prod.one("aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])
    (deny,) = policy["Statement"]
    assert deny["Effect"] == "Deny"
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert set(deny["Resource"]) == {f"arn:aws:s3:::{STATE_BUCKET}", f"arn:aws:s3:::{STATE_BUCKET}/*"}


def test_state_bucket_expires_noncurrent_versions_after_the_configured_days() -> None:
    deployment = run_program(cli_config(stateNoncurrentDays=30))
    (rule,) = deployment.one("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs[
        "rules"
    ]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"] == {"noncurrentDays": 30}


@pytest.mark.parametrize("typ", STATE_CHILDREN)
def test_state_bucket_survives_destroy(prod: Deployment, typ: str) -> None:
    resource = prod.one(typ)
    assert resource.protect, f"{typ} must be protected"
    assert resource.retain_on_delete, f"{typ} must be retained on delete"


def test_iam_policies_have_no_wildcard_actions_and_scoped_resources(prod: Deployment) -> None:
    # the image repository; the cache repository is the build's, never the server's
    (repo_arn,) = [
        r.inputs["arn"] for r in prod.of_type("aws:ecr/repository:Repository") if "cache" not in r.name
    ]
    group_arns = {g.inputs["arn"] for g in prod.of_type("aws:cloudwatch/logGroup:LogGroup")}
    policies = prod.of_type("aws:iam/rolePolicy:RolePolicy")
    assert policies
    for policy in policies:
        for statement in json.loads(policy.inputs["policy"])["Statement"]:
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            resources = (
                statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
            )
            assert statement["Effect"] == "Allow"
            assert all("*" not in action for action in actions), actions
            if actions == ["ecr:GetAuthorizationToken"]:
                assert resources == ["*"]  # the one action AWS cannot scope
            elif all(a.startswith("ecr:") for a in actions):
                assert resources == [repo_arn]
            else:
                assert all(a.startswith("logs:") for a in actions), actions
                group_arn = resources[0]
                assert group_arn in group_arns  # the app's log group, or the flow logs' own
                assert resources == [group_arn, f"{group_arn}:log-stream:*"]


def test_server_role_uses_session_manager_not_ssh(prod: Deployment) -> None:
    attachments = {
        a.inputs["policyArn"] for a in prod.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    }
    assert attachments == {"arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"}
    assumed_by = json.loads(prod.named("aws:iam/role:Role", "cali-role").inputs["assumeRolePolicy"])[
        "Statement"
    ]
    assert [s["Principal"] for s in assumed_by] == [{"Service": "ec2.amazonaws.com"}]
    assert prod.one(INSTANCE).inputs["iamInstanceProfile"] == "cali-profile"
    assert prod.of_type("aws:ec2/keyPair:KeyPair") == []


def test_log_group_retention_follows_config() -> None:
    deployment = run_program(cli_config(logRetentionDays=14))
    assert deployment.named("aws:cloudwatch/logGroup:LogGroup", "cali-logs").inputs["retentionInDays"] == 14


def test_every_taggable_resource_is_tagged(prod: Deployment) -> None:
    taggable = [r for r in prod.resources if r.custom and r.typ.startswith("aws:") and accepts_tags(r.typ)]
    assert len(taggable) >= 10
    for resource in taggable:
        tags = resource.inputs.get("tags") or {}
        assert tags.get("project") == "cali-housing", f"{resource.typ} {resource.name} is untagged"
        assert tags.get("managed-by") == "pulumi"
    # The root volume is tagged in RunInstances itself (volume_tags), not by a CreateTags after it.
    assert prod.one(INSTANCE).inputs["volumeTags"]["project"] == "cali-housing"


def test_every_resource_belongs_to_a_component(prod: Deployment) -> None:
    for resource in prod.resources:
        if resource.custom:
            parent_chain = resource.urn.split("::")[2]
            assert "cali:aws:" in parent_chain, f"{resource.name} is not parented to a component"


def test_every_export_is_present(prod: Deployment) -> None:
    assert set(prod.exports) == {
        "public_ip",
        "instance_id",
        "url",
        "ingress_group",
        "image",
        "state_bucket",
        "log_group",
        "curl",
    }
    assert prod.exports["url"] == f"http://{PUBLIC_IP}"
    assert prod.exports["log_group"] == "cali-logs"
    # the server's id, for `aws ssm start-session --target "$(pulumi stack output instance_id)"`
    (instance,) = prod.of_type("aws:ec2/instance:Instance")
    assert prod.exports["instance_id"] == f"{instance.name}-id"


def test_curl_export_posts_a_valid_example_to_predict(prod: Deployment) -> None:
    curl = prod.exports["curl"]
    assert curl.startswith(f"curl -s http://{PUBLIC_IP}/predict ")
    payload = curl.split("-d '", 1)[1].rstrip("'")
    assert json.loads(payload) == example_record()
