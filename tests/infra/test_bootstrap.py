"""`python -m infra.bootstrap` against a moto server over real HTTP: fresh, again, and half-done."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from infra import state_hardening
from infra.bootstrap import ensure_state_bucket, main
from tests.infra.conftest import MotoServer

REGION = "eu-west-1"
BUCKET = "cali-housing-state-123456789012-eu-west-1"  # moto's account id


def s3_client(server: MotoServer, region: str = REGION) -> Any:
    """An S3 client for the stand-in (boto3 clients are typed at runtime only)."""
    return boto3.client("s3", region_name=region, endpoint_url=server.url)


def assert_hardened(s3: Any, bucket: str, noncurrent_days: int = 90) -> None:
    """Every setting the Pulumi component declares is in place."""
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert block == state_hardening.PUBLIC_ACCESS_BLOCK
    ownership = s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
    assert ownership == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]) == state_hardening.tls_only_policy(
        bucket
    )
    (lifecycle,) = s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == noncurrent_days
    assert lifecycle["Status"] == "Enabled"
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert tags == state_hardening.STATE_BUCKET_TAGS


def test_fresh_account_gets_a_hardened_bucket_and_the_next_commands(
    aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--region", REGION, "--endpoint-url", aws_stand_in.url]) == 0
    out = capsys.readouterr().out
    assert f"created bucket {BUCKET} in {REGION}" in out
    assert f"pulumi login 's3://{BUCKET}?region={REGION}'" in out
    assert "pulumi stack init prod" in out
    assert f"pulumi config set stateBucket {BUCKET}" in out
    assert_hardened(s3_client(aws_stand_in), BUCKET)


def test_second_run_changes_nothing(aws_stand_in: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = s3_client(aws_stand_in)
    assert ensure_state_bucket(s3, BUCKET, REGION) != []
    assert ensure_state_bucket(s3, BUCKET, REGION) == []
    assert main(["--region", REGION, "--bucket", BUCKET, "--endpoint-url", aws_stand_in.url]) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_half_configured_bucket_is_repaired(aws_stand_in: MotoServer) -> None:
    # An earlier run that died after creating the bucket and turning on versioning, with a
    # lifecycle rule someone then edited by hand.
    s3 = s3_client(aws_stand_in)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_lifecycle_configuration(
        Bucket=BUCKET,
        LifecycleConfiguration={
            "Rules": [
                {
                    "ID": "hand-made",
                    "Status": "Enabled",
                    "Filter": {"Prefix": ""},
                    "NoncurrentVersionExpiration": {"NoncurrentDays": 1},
                }
            ]
        },
    )
    changed = ensure_state_bucket(s3, BUCKET, REGION)
    assert not any(line.startswith("created") for line in changed)
    assert "set versioning: enabled" not in changed
    assert "set lifecycle: noncurrent versions expire after 90 days" in changed
    assert "set public access: all blocked" in changed
    assert_hardened(s3, BUCKET)
    assert ensure_state_bucket(s3, BUCKET, REGION) == []


def test_us_east_1_bucket_is_created_without_a_location_constraint(aws_stand_in: MotoServer) -> None:
    s3 = s3_client(aws_stand_in, "us-east-1")
    ensure_state_bucket(s3, "cali-state-use1", "us-east-1", noncurrent_days=30)
    assert_hardened(s3, "cali-state-use1", noncurrent_days=30)


def test_state_bucket_keeps_earlier_state_versions(aws_stand_in: MotoServer) -> None:
    s3 = s3_client(aws_stand_in)
    ensure_state_bucket(s3, BUCKET, REGION)
    # moto ignores policy conditions, so it reads the TLS-only Deny as "deny everything"; set the
    # policy aside to write state (test_program.py pins the policy's condition itself).
    s3.delete_bucket_policy(Bucket=BUCKET)
    key = ".pulumi/stacks/cali-housing/prod.json"
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"version": 1}')
    s3.put_object(Bucket=BUCKET, Key=key, Body=b'{"version": 2}')
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    (earlier,) = [v for v in versions if not v["IsLatest"]]
    body = s3.get_object(Bucket=BUCKET, Key=key, VersionId=earlier["VersionId"])["Body"].read()
    assert body == b'{"version": 1}'
    assert ensure_state_bucket(s3, BUCKET, REGION) == ["set policy: deny non-TLS access"]
