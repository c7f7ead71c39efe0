"""The ECR repository the server pulls from, with immutable tags and a bounded history."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws


@dataclass
class RegistryArgs:
    """Arguments for Registry.

    Attributes:
        keep_images: How many most recent images to keep; older ones expire. Rollback reaches back this far.
        tags: Tags for the repository.
    """

    keep_images: int
    tags: dict[str, str]


def keep_last_policy(count: int) -> str:
    """An ECR lifecycle policy that expires all but the `count` most recently pushed images."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"keep the last {count} images for rollback",
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": count,
                    },
                    "action": {"type": "expire"},
                }
            ]
        }
    )


class Registry(pulumi.ComponentResource):
    """An ECR repository: scan on push, immutable tags, last N images kept."""

    repository: aws.ecr.Repository

    def __init__(self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:Registry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.repository = aws.ecr.Repository(
            f"{name}-repo",
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
        self.repository_url: pulumi.Output[str] = self.repository.repository_url
        self.repository_arn: pulumi.Output[str] = self.repository.arn
        self.register_outputs({"repository_url": self.repository_url, "repository_arn": self.repository_arn})
