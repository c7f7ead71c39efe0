"""The stack's ECR repositories, adopted from the account setup and never deleted by Pulumi.

The account setup (`make bootstrap`, `account/registries.py`) makes both repositories before any
stack needs them, with the settings `infra/repositories.py` declares; this component imports them
(`import_`), so CI can push the tested image with plain docker before an ordinary `pulumi up`, and
no `up`, `destroy` or replacement can delete an image: both are `protect`ed (a destroy refuses) and
`retain_on_delete` (removing them from the program, or a replacement, leaves them in AWS), and
`force_delete` is off (ECR refuses to delete a repository that still holds images).

`require_repositories` and `find_image` answer, before any resource is registered, whether the
repositories exist (a clear error naming the setup command when not) and whether a content tag is
already pushed (the program then deploys that digest and registers no build, infra/image.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import boto3
import botocore.exceptions
import pulumi
import pulumi_aws as aws

from infra.config import StackConfigError
from infra.repositories import RepositorySpec, expire_untagged_policy, keep_last_policy

__all__ = [
    "MissingRepositoryError",
    "Registry",
    "RegistryArgs",
    "expire_untagged_policy",
    "find_image",
    "keep_last_policy",
    "repository_inputs",
    "require_repositories",
]

# What DescribeImages raises for an absent tag (botocore's ECR service model, errors of
# DescribeImages); anything else (no credentials, access denied) is a real failure and propagates.
_IMAGE_NOT_FOUND = "ImageNotFoundException"
_REPOSITORY_NOT_FOUND = "RepositoryNotFoundException"


class MissingRepositoryError(StackConfigError):
    """The stack's repository does not exist: the account setup has not run for this stack."""

    def __init__(self, repositories: Sequence[str], stack: str, region: str) -> None:
        self.key = "stack"
        self.value = stack
        self.allowed = "a stack whose repositories the account setup made"
        ValueError.__init__(
            self,
            f"ECR repository {', '.join(repositories)} does not exist in {region}: the account setup makes "
            f"each stack's repositories before its first `up`. Run `make bootstrap` (every "
            f"Pulumi.<stack>.yaml) or `python -m account.bootstrap --region {region} --stacks {stack}`, "
            "then `pulumi up` again.",
        )


def require_repositories(names: Sequence[str], stack: str, region: str) -> None:
    """Fail with MissingRepositoryError unless every repository in `names` exists in this account.

    Called before anything is registered, so a stack the setup never ran for stops with the command
    to run, instead of a preview that fails deep in an import ("resource does not exist").

    Raises:
        MissingRepositoryError: One or more are absent.
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: Any other failure.
    """
    client = boto3.client("ecr", region_name=region)
    missing = []
    for name in names:
        try:
            client.describe_repositories(repositoryNames=[name])
        except botocore.exceptions.ClientError as err:
            if err.response.get("Error", {}).get("Code") != _REPOSITORY_NOT_FOUND:
                raise
            missing.append(name)
    if missing:
        raise MissingRepositoryError(missing, stack, region)


def find_image(repository: str, tag: str, region: str, stack: str) -> str | None:
    """The digest of `repository:tag` in this account's ECR, or None when the tag is absent.

    Why boto3 and not `aws.ecr.get_image`: that invoke fails the whole program when the image is
    missing (ImageNotFoundException, terraform-provider-aws issues #35268 and #36415: no "empty
    result" mode), and missing is the normal case for a new content tag. Credentials and endpoint
    come from the environment, as the AWS provider's do (AWS_ENDPOINT_URL points it at moto in tests).

    Raises:
        MissingRepositoryError: The repository itself is absent (the setup has not run for `stack`):
            not "no image", since the program could then neither import nor push to it.
        botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError: Any other failure
            (no credentials, access denied): a deploy must not guess.
    """
    client = boto3.client("ecr", region_name=region)
    try:
        found = client.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])
    except botocore.exceptions.ClientError as err:
        code = err.response.get("Error", {}).get("Code")
        if code == _IMAGE_NOT_FOUND:
            return None
        if code == _REPOSITORY_NOT_FOUND:
            raise MissingRepositoryError([repository], stack, region) from None
        raise
    details = found.get("imageDetails", [])
    return details[0]["imageDigest"] if details else None


def repository_inputs(spec: RepositorySpec) -> dict[str, object]:
    """The `aws.ecr.Repository` inputs for `spec`: exactly what the setup made, so the import is clean."""
    return {
        "name": spec.name,
        "image_tag_mutability": spec.mutability,
        "image_scanning_configuration": {"scan_on_push": spec.scan_on_push},
        "encryption_configurations": [{"encryption_type": spec.encryption}],
        "tags": spec.tags,
    }


@dataclass
class RegistryArgs:
    """Arguments for Registry.

    Attributes:
        images: The image repository (infra.repositories.image_repository).
        cache: The build-cache repository (infra.repositories.cache_repository).
        keep_images: How many most recent images to keep; older ones expire. Rollback reaches back this far.
    """

    images: RepositorySpec
    cache: RepositorySpec
    keep_images: int


class Registry(pulumi.ComponentResource):
    """Two adopted ECR repositories (images: immutable, scanned; build cache) and their lifecycle policies."""

    repository: aws.ecr.Repository

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        # The logical names are the previous version's, so a stack it made keeps these URNs: its
        # state already holds each repository under the id `import_` names, and the engine then
        # does no import at all, only the ordinary diff (force_delete true -> off, in place), since
        # "an import occurs if there is no old resource or if the old resource's ID does not match
        # the ID in the goal state" (pulumi/pulumi pkg/resource/deploy/step_generator.go, the
        # isImport test). docs/deploy.md, "Migrating a stack made by the previous version".
        self.repository = self._adopt(f"{name}-repo", args.images)
        aws.ecr.LifecyclePolicy(
            f"{name}-keep-last",
            repository=self.repository.name,
            policy=keep_last_policy(args.keep_images),
            opts=child,
        )
        # BuildKit's registry cache (`cache_to`) rewrites one tag on every build, which an immutable
        # repository refuses; a repository of its own keeps the images' tags immutable. Untagged
        # manifests are the superseded caches.
        self.cache_repository = self._adopt(f"{name}-cache-repo", args.cache)
        aws.ecr.LifecyclePolicy(
            f"{name}-cache-expiry",
            repository=self.cache_repository.name,
            policy=expire_untagged_policy(1),
            opts=child,
        )
        self.repository_url: pulumi.Output[str] = self.repository.repository_url
        self.repository_arn: pulumi.Output[str] = self.repository.arn
        self.register_outputs({"repository_url": self.repository_url, "repository_arn": self.repository_arn})

    def _adopt(self, logical: str, spec: RepositorySpec) -> aws.ecr.Repository:
        # ECR's repository id is its name (the provider's import: `pulumi import aws:ecr/repository:
        # Repository service test-service`, pulumi_aws/ecr/repository.py).
        return aws.ecr.Repository(
            logical,
            **repository_inputs(spec),
            # protect: `pulumi destroy` refuses (use --exclude-protected); retain_on_delete: removing
            # it from the program or replacing it never calls ECR's DeleteRepository. No force_delete:
            # even a deletion by hand is refused by ECR while images remain.
            opts=pulumi.ResourceOptions(parent=self, import_=spec.name, protect=True, retain_on_delete=True),
        )
