"""The S3 bucket that holds Pulumi's state, adopted from the bootstrap and hardened."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from infra import state_hardening as hardening


@dataclass
class StateBucketArgs:
    """Arguments for StateBucket.

    Attributes:
        bucket_name: The name `python -m account.bootstrap` created (it is adopted, not created).
        noncurrent_days: Days an overwritten state file's old version is kept before it expires.
    """

    bucket_name: str
    noncurrent_days: int


class StateBucket(pulumi.ComponentResource):
    """The state bucket: versioned, encrypted, private, TLS-only, never deleted by Pulumi."""

    bucket: aws.s3.Bucket

    def __init__(self, name: str, args: StateBucketArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:StateBucket", name, None, opts)

        # Losing this bucket loses every stack's record of what it owns, so nothing here is ever
        # deleted by Pulumi: protect refuses `pulumi destroy` (use --exclude-protected), and
        # retain_on_delete leaves the cloud resource behind even if the resource is unprotected
        # and removed from the program. The settings get the same treatment as the bucket, since
        # deleting, say, the public access block would quietly weaken the bucket that remains.
        def keep(**extra: object) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True, **extra)

        bucket_name = args.bucket_name
        # The bootstrap created the bucket before any state existed; import it so Pulumi owns its
        # configuration from now on and `pulumi preview` shows drift. Inputs must match what the
        # bootstrap made (name and tags), or the import is refused. Its settings are imported too
        # (each by the bucket's name: the pulumi_aws docstrings' `pulumi import` examples), so no
        # `up` writes them: CI's deploy role may not change the bucket that holds every stack's
        # history (account/permissions.py), and the bootstrap makes them exactly as declared here.
        self.bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=bucket_name,
            tags=hardening.STATE_BUCKET_TAGS,
            opts=keep(import_=bucket_name),
        )
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=self.bucket.id,
            rule={"object_ownership": hardening.OBJECT_OWNERSHIP},
            opts=keep(import_=bucket_name),
        )
        aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block",
            bucket=self.bucket.id,
            block_public_acls=hardening.PUBLIC_ACCESS_BLOCK["BlockPublicAcls"],
            ignore_public_acls=hardening.PUBLIC_ACCESS_BLOCK["IgnorePublicAcls"],
            block_public_policy=hardening.PUBLIC_ACCESS_BLOCK["BlockPublicPolicy"],
            restrict_public_buckets=hardening.PUBLIC_ACCESS_BLOCK["RestrictPublicBuckets"],
            opts=keep(import_=bucket_name),
        )
        aws.s3.BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=keep(import_=bucket_name),
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=self.bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": hardening.SSE_ALGORITHM}}],
            opts=keep(import_=bucket_name),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=self.bucket.id,
            rules=[
                {
                    "id": hardening.LIFECYCLE_RULE_ID,
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "noncurrent_version_expiration": {"noncurrent_days": args.noncurrent_days},
                    "abort_incomplete_multipart_upload": {
                        "days_after_initiation": hardening.ABORT_MULTIPART_DAYS
                    },
                }
            ],
            opts=keep(import_=bucket_name),
        )
        # The policy is a constant of the (plain string) name, so it needs no Output plumbing.
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=self.bucket.id,
            policy=hardening.tls_only_policy_json(bucket_name),
            opts=keep(import_=bucket_name),
        )
        self.bucket_name: pulumi.Output[str] = self.bucket.bucket
        self.register_outputs({"bucket_name": self.bucket_name})
