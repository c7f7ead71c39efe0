"""The stack's two ECR repositories, declared once: the account setup makes them, the program adopts them.

Standard library only: `account/registries.py` (boto3, before any stack exists) creates each
repository with exactly these settings, and `infra/registry.py` (the Pulumi program) imports it with
the same ones. Pulumi adopts a resource whose inputs match what exists as a plain import; a
replace-on-change property that differs (the encryption) is refused ("previously-imported resources
that still specify an ID may not be replaced", pulumi/pulumi pkg/resource/deploy/step_generator.go),
so the two sides read one declaration (tests/infra/test_registry.py compares them on moto).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.release import cache_repository_name, repository_name
from infra.tags import stack_tags

# AES256 (SSE-S3 keys managed by ECR) is what ECR applies when a repository is created without an
# encryption configuration, so the repositories the previous version of the program made already
# have it: adopting them changes nothing. KMS would be a replacement, which ECR cannot do in place
# (the encryption configuration cannot be changed after creation: ECR API reference,
# EncryptionConfiguration) and which Pulumi refuses for an imported resource.
ENCRYPTION = "AES256"


@dataclass(frozen=True)
class RepositorySpec:
    """One repository as both sides make it.

    Attributes:
        name: The repository's name (infra.release).
        mutability: IMMUTABLE (a tag names one build forever) or MUTABLE (the build cache's one tag).
        scan_on_push: Scan each pushed image for CVEs.
        encryption: ECR's encryption type.
        tags: The stack's tags.
    """

    name: str
    mutability: str
    scan_on_push: bool
    encryption: str
    tags: dict[str, str]


def image_repository(stack: str) -> RepositorySpec:
    """The images the servers pull: immutable tags, so "roll back to <digest/tag>" means what it says."""
    return RepositorySpec(repository_name(stack), "IMMUTABLE", True, ENCRYPTION, stack_tags(stack))


def cache_repository(stack: str) -> RepositorySpec:
    """BuildKit's registry cache: mutable, since `cache_to` rewrites one tag on every build."""
    return RepositorySpec(cache_repository_name(stack), "MUTABLE", False, ENCRYPTION, stack_tags(stack))


def stack_repositories(stack: str) -> tuple[RepositorySpec, RepositorySpec]:
    """Both of a stack's repositories, images first."""
    return image_repository(stack), cache_repository(stack)


def _expire_policy(description: str, selection: dict[str, object]) -> str:
    """An ECR lifecycle policy of one rule that expires what `selection` picks."""
    rule = {
        "rulePriority": 1,
        "description": description,
        "selection": selection,
        "action": {"type": "expire"},
    }
    return json.dumps({"rules": [rule]})


def keep_last_policy(count: int) -> str:
    """An ECR lifecycle policy that expires all but the `count` most recently pushed images."""
    return _expire_policy(
        f"keep the last {count} images for rollback",
        {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count},
    )


def expire_untagged_policy(days: int) -> str:
    """An ECR lifecycle policy that expires untagged images (superseded cache manifests) after `days`."""
    return _expire_policy(
        f"drop superseded build-cache manifests after {days} day(s)",
        {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": days},
    )
