"""The application image: built from the repository's Dockerfile and pushed to ECR."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker


@dataclass
class AppImageArgs:
    """Arguments for AppImage.

    Attributes:
        repository: The ECR repository to push to.
        tag: An immutable tag (git sha or model version); ECR refuses to move it.
        context: Build context, relative to the project directory Pulumi runs in.
        dockerfile: The Dockerfile, relative to the same directory.
        rollback_digest: ``sha256:...`` of an image already in the repository: deploy that one
            and build nothing (a rollback). Empty: build and push this checkout.
    """

    repository: aws.ecr.Repository
    tag: str
    context: str = "."
    dockerfile: str = "Dockerfile"
    rollback_digest: str = ""


class AppImage(pulumi.ComponentResource):
    """Builds the image for linux/amd64 and pushes it, or picks an earlier one; exposes repo@digest."""

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:AppImage", name, None, opts)
        if args.rollback_digest:
            # A rebuild of an old commit would not be byte-identical, and its tag is immutable, so
            # a rollback reuses the pushed image. Looking it up makes `pulumi preview` fail when
            # ECR no longer holds it (older than the last keepImages).
            existing = aws.ecr.get_image_output(
                repository_name=args.repository.name, image_digest=args.rollback_digest
            )
            self.repo_digest: pulumi.Output[str] = pulumi.Output.concat(
                args.repository.repository_url, "@", existing.image_digest
            )
            self.register_outputs({"repo_digest": self.repo_digest})
            return
        token = aws.ecr.get_authorization_token_output(registry_id=args.repository.registry_id)
        # The token is a live credential; keep it encrypted in state and masked in logs.
        self.registry_password: pulumi.Output[str] = pulumi.Output.secret(token.password)
        image = docker.Image(
            f"{name}-image",
            build=docker.DockerBuildArgs(
                context=args.context,
                dockerfile=args.dockerfile,
                # The servers are x86_64 even when the image is built on an ARM laptop.
                platform="linux/amd64",
            ),
            image_name=pulumi.Output.concat(args.repository.repository_url, ":", args.tag),
            registry=docker.RegistryArgs(
                server=args.repository.repository_url.apply(lambda url: url.split("/", 1)[0]),
                username=token.user_name,
                password=self.registry_password,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        # repo@sha256:... names exactly the bytes that were pushed; a tag could in principle be
        # re-pointed (not here: tags are immutable), and :latest says nothing at all.
        self.repo_digest = image.repo_digest
        self.register_outputs({"repo_digest": self.repo_digest})
