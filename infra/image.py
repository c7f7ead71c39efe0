"""The application image: found in ECR by its content tag, or built once and pushed under it.

Three ways to an image digest, in this order:

1. `imageDigest` is set (a rollback): that image, looked up in ECR so a preview fails when it is gone.
2. The content tag (infra/release.py) is already in ECR (`existing_digest`, found by the program
   with `infra.registry.find_image` before registering anything): that digest. No build resource
   at all, so a re-run or a docs-only commit changes nothing. This is the path CI takes: it builds,
   tests and pushes the image itself, and `pulumi up` then finds exactly that image.
3. Otherwise (a laptop `pulumi up` of new content): `pulumi_docker_build.Image` builds for
   linux/amd64, pushes under the content tag, and reads/writes a BuildKit registry cache in the
   stack's cache repository, so the dependency and training layers are reused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_docker_build as docker_build

from infra.release import CACHE_TAG, PLATFORM, REVISION_ARG


@dataclass
class AppImageArgs:
    """Arguments for AppImage.

    Attributes:
        repository: The ECR repository images are pushed to and pulled from.
        cache_repository: The ECR repository holding the BuildKit cache.
        tag: The content tag (infra.release.content_tag), immutable in ECR.
        revision: The commit being deployed; a build records it (label, `/ready`). Not part of the tag.
        existing_digest: `sha256:...` already pushed under `tag`: deploy it, build nothing.
        rollback_digest: `sha256:...` of an earlier image in the repository (config `imageDigest`).
        context: Build context, relative to the project directory Pulumi runs in.
        dockerfile: The Dockerfile, relative to the same directory.
        build_args: Further build arguments (none in normal use).
    """

    repository: aws.ecr.Repository
    cache_repository: aws.ecr.Repository
    tag: str
    revision: str
    existing_digest: str | None = None
    rollback_digest: str = ""
    context: str = "."
    dockerfile: str = "Dockerfile"
    build_args: dict[str, str] = field(default_factory=dict)


class AppImage(pulumi.ComponentResource):
    """Exposes `repo_digest` (repo@sha256:...) and `source` (rollback, existing or build)."""

    def __init__(self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("cali:aws:AppImage", name, None, opts)
        url = args.repository.repository_url
        if args.rollback_digest:
            # A rollback reuses the pushed image. Looking it up makes `pulumi preview` fail when
            # ECR no longer holds it (older than the last keepImages).
            existing = aws.ecr.get_image_output(
                repository_name=args.repository.name, image_digest=args.rollback_digest
            )
            self.source = "rollback"
            self.repo_digest: pulumi.Output[str] = pulumi.Output.concat(url, "@", existing.image_digest)
        elif args.existing_digest:
            self.source = "existing"
            self.repo_digest = pulumi.Output.concat(url, "@", args.existing_digest)
        else:
            self.source = "build"
            self.repo_digest = self._build(name, args)
        self.register_outputs({"repo_digest": self.repo_digest})

    def _build(self, name: str, args: AppImageArgs) -> pulumi.Output[str]:
        token = aws.ecr.get_authorization_token_output(registry_id=args.repository.registry_id)
        # The token is a live credential; keep it encrypted in state and masked in logs.
        password = pulumi.Output.secret(token.password)
        cache_ref = pulumi.Output.concat(args.cache_repository.repository_url, ":", CACHE_TAG)
        image = docker_build.Image(
            f"{name}-image",
            context=docker_build.BuildContextArgs(location=args.context),
            dockerfile=docker_build.DockerfileArgs(location=args.dockerfile),
            platforms=[docker_build.Platform(PLATFORM)],
            build_args={REVISION_ARG: args.revision, **args.build_args},
            tags=[pulumi.Output.concat(args.repository.repository_url, ":", args.tag)],
            push=True,
            # A preview builds nothing and pushes nothing; `up` does both once.
            build_on_preview=False,
            # ECR takes the BuildKit cache as an OCI image manifest (the provider's own "Push to
            # AWS ECR with caching" example, pulumi_docker_build/image.py); mode max keeps the
            # dependency and training stages, not only the final one.
            cache_from=[
                docker_build.CacheFromArgs(registry=docker_build.CacheFromRegistryArgs(ref=cache_ref))
            ],
            cache_to=[
                docker_build.CacheToArgs(
                    registry=docker_build.CacheToRegistryArgs(
                        ref=cache_ref,
                        image_manifest=True,
                        oci_media_types=True,
                        mode=docker_build.CacheMode.MAX,
                    )
                )
            ],
            registries=[
                docker_build.RegistryArgs(
                    address=args.repository.repository_url.apply(lambda u: u.split("/", 1)[0]),
                    username=token.user_name,
                    password=password,
                )
            ],
            # The next `up` finds this tag in ECR and registers no build, so Pulumi deletes this
            # resource from its state; deleting an Image "will attempt to also delete any pushed
            # tags" (the provider's docstring), which would delete the very image the servers run.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        # repo@sha256:... names exactly the bytes that were pushed.
        return pulumi.Output.concat(args.repository.repository_url, "@", image.digest)
