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
    """

    repository: aws.ecr.Repository
    tag: str
    context: str = "."
    dockerfile: str = "Dockerfile"


class AppImage(pulumi.ComponentResource):
    """Builds the image for linux/amd64, pushes it, and exposes its digest reference."""

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:AppImage", name, None, opts)
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
        self.repo_digest: pulumi.Output[str] = image.repo_digest
        self.image_name: pulumi.Output[str] = image.image_name
        self.register_outputs({"repo_digest": self.repo_digest, "image_name": self.image_name})
