"""Storage invariants: S3 buckets (encrypted, private, no orphaned uploads), ECR tags, ALB logs."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from . import tokens as t
from .model import (
    ADVISORY,
    MANDATORY,
    Resource,
    ResourceRule,
    StackRule,
    Violation,
    depends_on,
    has_key,
    items,
    mapping,
    number,
    of_type,
    truthy,
)

# What S3 accepts as default encryption (S3 API PutBucketEncryption, SSEAlgorithm).
SSE_ALGORITHMS = frozenset({"AES256", "aws:kms", "aws:kms:dsse"})
BLOCK_FLAGS = ("blockPublicAcls", "ignorePublicAcls", "blockPublicPolicy", "restrictPublicBuckets")


def _bound(resources: Sequence[Resource], bucket: Resource, *types: str) -> list[Resource]:
    """The resources of `types` that configure `bucket` (they depend on it through their bucket input)."""
    return [r for r in of_type(resources, *types) if depends_on(r, bucket)]


def _algorithms(encryption: Resource) -> list[Any]:
    return [
        mapping(rule.get("applyServerSideEncryptionByDefault")).get("sseAlgorithm")
        for rule in items(encryption.props.get("rules"))
    ]


def _encrypted_buckets(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterator[Violation]:
    # Judged on the configuration resource, not the bucket's own serverSideEncryptionConfiguration:
    # that is deprecated as an input and, as an output, read back from AWS, which reports SSE-S3 for
    # every bucket made since 2023; trusting it would pass any bucket (pulumi_aws/s3/bucket.py).
    for bucket in of_type(resources, *t.BUCKETS):
        configs = _bound(resources, bucket, *t.BUCKET_ENCRYPTION)
        if not configs:
            yield Violation(f"bucket {bucket.name} has no server-side encryption configuration.", bucket.urn)
        for config in configs:
            algorithms = _algorithms(config)
            if not algorithms or any(a not in SSE_ALGORITHMS for a in algorithms):
                yield Violation(
                    f"bucket {bucket.name}'s encryption rules name {algorithms}; each must be one of "
                    f"{sorted(SSE_ALGORITHMS)}.",
                    config.urn,
                )


ENCRYPTED_BUCKETS = StackRule(
    name="encrypted-buckets",
    description="Every S3 bucket of the stack has a default server-side encryption configuration of its own.",
    remediation="Add an aws.s3.BucketServerSideEncryptionConfiguration for the bucket (SSE-S3, AES256, "
    "as infra/logs.py and infra/state_bucket.py do).",
    level=MANDATORY,
    types=(*t.BUCKETS, *t.BUCKET_ENCRYPTION),
    check=_encrypted_buckets,
)


def _private_buckets(resources: Sequence[Resource], _config: Mapping[str, Any]) -> Iterator[Violation]:
    for bucket in of_type(resources, *t.BUCKETS):
        blocks = _bound(resources, bucket, t.PUBLIC_ACCESS_BLOCK)
        if not blocks:
            yield Violation(f"bucket {bucket.name} has no public access block.", bucket.urn)
        for block in blocks:
            off = [flag for flag in BLOCK_FLAGS if not truthy(block.props.get(flag))]
            if off:
                yield Violation(f"bucket {bucket.name}'s public access block leaves {off} off.", block.urn)


PRIVATE_BUCKETS = StackRule(
    name="buckets-block-public-access",
    description="Every S3 bucket of the stack has a public access block with all four settings on.",
    remediation="Add an aws.s3.BucketPublicAccessBlock for the bucket with block_public_acls, "
    "ignore_public_acls, block_public_policy and restrict_public_buckets True.",
    level=MANDATORY,
    types=(t.PUBLIC_ACCESS_BLOCK,),
    check=_private_buckets,
)


def _whole_bucket(rule: Mapping[str, Any]) -> bool:
    """Whether a lifecycle rule applies to every object: its filter (or the filter's `and`) selects
    by no prefix, size or tag, as Checkov's CKV_AWS_300 (S3AbortIncompleteUploads) reads it."""
    if has_key(rule, "prefix") and rule.get("prefix"):
        return False
    selector = mapping(rule.get("filter"))
    selector = {**selector, **mapping(selector.get("and"))}
    return all(not selector.get(key) for key in selector if key != "and")


def _abort_uploads(_typ: str, props: Mapping[str, Any], _config: Mapping[str, Any]) -> Iterator[str]:
    for rule in items(props.get("rules")):
        days = number(mapping(rule.get("abortIncompleteMultipartUpload")).get("daysAfterInitiation"))
        if rule.get("status") == "Enabled" and days is not None and days >= 1 and _whole_bucket(rule):
            return
    yield (
        "no enabled rule over the whole bucket sets abortIncompleteMultipartUpload.daysAfterInitiation; "
        "an interrupted upload's parts stay (and are billed) forever."
    )


ABORT_INCOMPLETE_UPLOADS = ResourceRule(
    name="abort-incomplete-multipart-uploads",
    description="Every bucket lifecycle configuration aborts incomplete multipart uploads after a period "
    "(Checkov CKV_AWS_300).",
    remediation="Add abort_incomplete_multipart_upload {days_after_initiation: 7} to an enabled rule "
    "with an empty filter (infra/logs.py, infra/state_bucket.py).",
    level=MANDATORY,
    types=t.BUCKET_LIFECYCLE,
    check=_abort_uploads,
)


def _immutable_tags(_typ: str, props: Mapping[str, Any], config: Mapping[str, Any]) -> Iterator[str]:
    name = props.get("name")
    if isinstance(name, str) and any(name.endswith(s) for s in config["mutableRepositorySuffixes"]):
        return  # the build cache: overwritten on every build, never deployed
    if props.get("imageTagMutability") != "IMMUTABLE":
        yield (
            f"repository {name!r} has imageTagMutability {props.get('imageTagMutability')!r}; a pushed tag "
            "could then be re-pointed at another image after it was tested."
        )


IMMUTABLE_TAGS = ResourceRule(
    name="immutable-image-tags",
    description="An ECR repository the service is deployed from has immutable tags: a tag names one "
    "tested image forever.",
    remediation="Set image_tag_mutability 'IMMUTABLE' (python -m account.bootstrap creates the stack's "
    "repositories so); only a build-cache repository, named by mutableRepositorySuffixes, may be mutable.",
    level=MANDATORY,
    types=(t.ECR_REPOSITORY,),
    check=_immutable_tags,
    config={
        "mutableRepositorySuffixes": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["-cache"],
            "description": "Name endings of repositories that hold build cache, never a deployed image.",
        }
    },
)


def _access_logs(_typ: str, props: Mapping[str, Any], _config: Mapping[str, Any]) -> Iterator[str]:
    if props.get("loadBalancerType", "application") != "application":
        return
    if not truthy(mapping(props.get("accessLogs")).get("enabled")):
        yield "the load balancer writes no access logs."


ALB_ACCESS_LOGS = ResourceRule(
    name="alb-access-logs",
    description="The application load balancer writes access logs to the stack's log bucket.",
    remediation="Keep the stack setting fleetAccessLogs true; a stack that turns them off on purpose "
    "disables this policy in its policy config (docs/deploy.md).",
    level=ADVISORY,
    types=(t.LOAD_BALANCER,),
    check=_access_logs,
)

RULES = (ENCRYPTED_BUCKETS, PRIVATE_BUCKETS, ABORT_INCOMPLETE_UPLOADS, IMMUTABLE_TAGS, ALB_ACCESS_LOGS)
