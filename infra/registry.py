"""The ECR repositories: the images the server pulls (immutable tags, a bounded history) and the build cache.

`find_image` answers, before any resource is registered, whether a content tag is already pushed:
the program then deploys that digest and registers no build (infra/image.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import boto3
import botocore.exceptions
import pulumi
import pulumi_aws as aws

# What DescribeImages raises for "not there" (botocore's ECR service model, errors of
# DescribeImages); anything else (no credentials, access denied) is a real failure and propagates.
_NOT_FOUND = ("ImageNotFoundException", "RepositoryNotFoundException")


@dataclass
class RegistryArgs:
    """Arguments for Registry.

    Attributes:
        name: The image repository's name (infra.release.repository_name): fixed, not auto-named,
            so a tag can be looked up before the program runs.
        cache_name: The build-cache repository's name (infra.release.cache_repository_name).
        keep_images: How many most recent images to keep; older ones expire. Rollback reaches back this far.
        tags: Tags for the repository.
    """

    name: str
    cache_name: str
    keep_images: int
    tags: dict[str, str]


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


def find_image(repository: str, tag: str, region: str) -> str | None:
    """The digest of `repository:tag` in this account's ECR, or None when the tag (or repository) is absent.

    Why boto3 and not `aws.ecr.get_image`: that invoke fails the whole program when the image is
    missing (ImageNotFoundException, terraform-provider-aws issues #35268 and #36415: no "empty
    result" mode), and missing is the normal case for a new content tag. Credentials and endpoint
    come from the environment, as the AWS provider's do (AWS_ENDPOINT_URL points it at moto in tests).

    Raises:
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: Any other failure
            (no credentials, access denied): a deploy must not guess.
    """
    client = boto3.client("ecr", region_name=region)
    try:
        found = client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except botocore.exceptions.ClientError as err:
        if err.response.get("Error", {}).get("Code") in _NOT_FOUND:
            return None
        raise
    details = found.get("imageDetails", [])
    return details[0]["imageDigest"] if details else None


class Registry(pulumi.ComponentResource):
    """Two ECR repositories: images (scan on push, immutable tags, last N kept) and the build cache."""

    repository: aws.ecr.Repository

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
            name=args.name,
            # Immutable tags: a tag names one build forever, so "roll back to <sha>" means what it says.
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration={"scan_on_push": True},
            # Deleting the stack may delete its images; they are rebuilt from git on the next `up`.
            force_delete=True,
            tags=args.tags,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-keep-last",
            repository=self.repository.name,
            policy=keep_last_policy(args.keep_images),
            opts=child,
        )
        # BuildKit's registry cache (`cache_to`) rewrites one tag on every build, which an immutable
        # repository refuses; a repository of its own keeps the images' tags immutable. Untagged
        # manifests are the superseded caches.
        self.cache_repository = aws.ecr.Repository(
            f"{name}-cache-repo",
            name=args.cache_name,
            image_tag_mutability="MUTABLE",
            force_delete=True,
            tags=args.tags,
            opts=child,
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-cache-expiry",
            repository=self.cache_repository.name,
            policy=expire_untagged_policy(1),
            opts=child,
        )
        self.repository_url: pulumi.Output[str] = self.repository.repository_url
        self.repository_arn: pulumi.Output[str] = self.repository.arn
        self.register_outputs({"repository_url": self.repository_url, "repository_arn": self.repository_arn})
