"""Create the Pulumi state bucket before Pulumi can run: `python -m infra.bootstrap`.

A stack cannot keep its state in a bucket it has not created yet, so this makes the bucket with
boto3, hardened exactly as `infra.state_bucket.StateBucket` declares it (both read
`infra.state_hardening`); the program then imports it. Every setting is read, compared and only
written when it differs, so a second run changes nothing and a run that died half-way is repaired.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from infra import state_hardening as hardening


class BootstrapError(Exception):
    """The bucket cannot be made ours (e.g. the name belongs to another account)."""


def _absent_on(*codes: str) -> Callable[[Callable[[], Any]], Any]:
    """Call a getter; a ClientError with one of `codes` means "not configured" and gives None."""

    def call(getter: Callable[[], Any]) -> Any:
        try:
            return getter()
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in codes:
                return None
            raise

    return call


@dataclass(frozen=True)
class _Setting:
    """One bucket setting: how to read it (normalised), the wanted value, and how to write it."""

    name: str
    current: Callable[[], Any]
    wanted: Any
    apply: Callable[[], Any]


def _settings(s3: Any, bucket: str, noncurrent_days: int) -> list[_Setting]:
    lifecycle_rule = {
        "ID": hardening.LIFECYCLE_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": hardening.ABORT_MULTIPART_DAYS},
    }

    def lifecycle() -> Any:
        got = _absent_on("NoSuchLifecycleConfiguration")(
            lambda: s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
        )
        if got is None:
            return None
        return [
            {
                "ID": r.get("ID"),
                "Status": r.get("Status"),
                "Filter": {"Prefix": r.get("Filter", {}).get("Prefix", "")},
                "NoncurrentVersionExpiration": {
                    "NoncurrentDays": r.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
                },
                "AbortIncompleteMultipartUpload": {
                    "DaysAfterInitiation": r.get("AbortIncompleteMultipartUpload", {}).get(
                        "DaysAfterInitiation"
                    )
                },
            }
            for r in got
        ]

    def encryption() -> Any:
        got = _absent_on("ServerSideEncryptionConfigurationNotFoundError")(
            lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        )
        return None if got is None else [r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in got]

    def policy() -> Any:
        got = _absent_on("NoSuchBucketPolicy")(lambda: s3.get_bucket_policy(Bucket=bucket)["Policy"])
        return None if got is None else json.loads(got)

    def tags() -> Any:
        got = _absent_on("NoSuchTagSet", "NoSuchTagSetError")(
            lambda: s3.get_bucket_tagging(Bucket=bucket)["TagSet"]
        )
        return None if got is None else {t["Key"]: t["Value"] for t in got}

    return [
        _Setting(
            "object ownership: bucket owner enforced",
            lambda: _absent_on("OwnershipControlsNotFoundError")(
                lambda: [
                    r["ObjectOwnership"]
                    for r in s3.get_bucket_ownership_controls(Bucket=bucket)["OwnershipControls"]["Rules"]
                ]
            ),
            [hardening.OBJECT_OWNERSHIP],
            lambda: s3.put_bucket_ownership_controls(
                Bucket=bucket, OwnershipControls={"Rules": [{"ObjectOwnership": hardening.OBJECT_OWNERSHIP}]}
            ),
        ),
        _Setting(
            "public access: all blocked",
            lambda: _absent_on("NoSuchPublicAccessBlockConfiguration")(
                lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
            ),
            hardening.PUBLIC_ACCESS_BLOCK,
            lambda: s3.put_public_access_block(
                Bucket=bucket, PublicAccessBlockConfiguration=hardening.PUBLIC_ACCESS_BLOCK
            ),
        ),
        _Setting(
            "versioning: enabled",
            lambda: s3.get_bucket_versioning(Bucket=bucket).get("Status"),
            "Enabled",
            lambda: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"}),
        ),
        _Setting(
            f"encryption: {hardening.SSE_ALGORITHM}",
            encryption,
            [hardening.SSE_ALGORITHM],
            lambda: s3.put_bucket_encryption(
                Bucket=bucket,
                ServerSideEncryptionConfiguration={
                    "Rules": [
                        {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": hardening.SSE_ALGORITHM}}
                    ]
                },
            ),
        ),
        _Setting(
            f"lifecycle: noncurrent versions expire after {noncurrent_days} days",
            lifecycle,
            [lifecycle_rule],
            lambda: s3.put_bucket_lifecycle_configuration(
                Bucket=bucket, LifecycleConfiguration={"Rules": [lifecycle_rule]}
            ),
        ),
        _Setting(
            "policy: deny non-TLS access",
            policy,
            hardening.tls_only_policy(bucket),
            lambda: s3.put_bucket_policy(Bucket=bucket, Policy=hardening.tls_only_policy_json(bucket)),
        ),
        _Setting(
            "tags: as the Pulumi program declares them",
            tags,
            hardening.STATE_BUCKET_TAGS,
            lambda: s3.put_bucket_tagging(
                Bucket=bucket,
                Tagging={
                    "TagSet": [{"Key": k, "Value": v} for k, v in sorted(hardening.STATE_BUCKET_TAGS.items())]
                },
            ),
        ),
    ]


def ensure_state_bucket(s3: Any, bucket: str, region: str, noncurrent_days: int = 90) -> list[str]:
    """Create the state bucket if absent and bring every hardening setting to what it should be.

    Args:
        s3: A boto3 S3 client for `region`.
        bucket: The bucket name.
        region: The region to create it in.
        noncurrent_days: Days old state versions are kept (the program's stateNoncurrentDays).

    Returns:
        What was changed, one line each; empty when everything already was as it should be.

    Raises:
        BootstrapError: The bucket exists but is not this account's.
    """
    changed: list[str] = []
    try:
        s3.head_bucket(Bucket=bucket)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code in ("403", "AccessDenied", "Forbidden"):
            raise BootstrapError(
                f"bucket {bucket} exists and is not yours (or you may not read it)"
            ) from None
        if code not in ("404", "NoSuchBucket", "NotFound"):
            raise
        create: dict[str, Any] = {"Bucket": bucket, "ObjectOwnership": hardening.OBJECT_OWNERSHIP}
        if region != "us-east-1":  # us-east-1 refuses an explicit LocationConstraint for itself
            create["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**create)
        changed.append(f"created bucket {bucket} in {region}")
    for setting in _settings(s3, bucket, noncurrent_days):
        if setting.current() != setting.wanted:
            setting.apply()
            changed.append(f"set {setting.name}")
    return changed


def default_bucket_name(account_id: str, region: str) -> str:
    """A name unique to the account and region: bucket names are global across all of AWS."""
    return f"cali-housing-state-{account_id}-{region}"


def next_steps(bucket: str, region: str) -> str:
    """The commands to run after the bootstrap, in order."""
    return "\n".join(
        [
            "Next, from the repository root:",
            f"  pulumi login 's3://{bucket}?region={region}'",
            "  pulumi stack init prod",
            f"  pulumi config set stateBucket {bucket}",
            "  pulumi preview",
            "  pulumi up",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m infra.bootstrap`; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m infra.bootstrap", description=__doc__.splitlines()[0])
    parser.add_argument("--region", help="AWS region (default: your AWS profile's region)")
    parser.add_argument("--bucket", help="bucket name (default: cali-housing-state-<account>-<region>)")
    parser.add_argument("--noncurrent-days", type=int, default=90, help="days old state versions are kept")
    parser.add_argument("--endpoint-url", help="S3/STS endpoint, for testing against a local AWS stand-in")
    args = parser.parse_args(argv)

    session = boto3.session.Session(region_name=args.region)
    region = session.region_name
    if not region:
        parser.error("no region: pass --region or set AWS_REGION")
    bucket = args.bucket
    if bucket is None:
        sts = session.client("sts", endpoint_url=args.endpoint_url)
        bucket = default_bucket_name(sts.get_caller_identity()["Account"], region)
    s3 = session.client("s3", endpoint_url=args.endpoint_url)
    try:
        changes = ensure_state_bucket(s3, bucket, region, args.noncurrent_days)
    except BootstrapError as err:
        print(f"error: {err}; pass --bucket with another name", file=sys.stderr)
        return 1
    for line in changes:
        print(line)
    if not changes:
        print(f"state bucket {bucket} already in place; nothing changed")
    print(next_steps(bucket, region))
    return 0


if __name__ == "__main__":
    sys.exit(main())
