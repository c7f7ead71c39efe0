"""Make (or adopt) each stack's two ECR repositories before the stack needs them.

CI pushes the tested image with plain docker before an ordinary `pulumi up`, and the program
imports the repositories (infra/registry.py), so they must exist first: this runs as part of the
account setup (`make bootstrap`, `python -m account.bootstrap --stacks prod staging`). Each
repository gets exactly the settings `infra/repositories.py` declares, the same declaration the
program imports it with. Idempotent: an existing repository (one the previous version of the program
made, with its images) is kept as it is and only its settings that differ are put right; a second
run changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from infra.repositories import RepositorySpec, stack_repositories

PROGRAM_DIR = Path(__file__).resolve().parents[1]
_STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>[A-Za-z0-9_.-]+)\.yaml$")
# The stack file's region line, e.g. `  aws:region: us-east-1` (Pulumi.prod.yaml).
_REGION_LINE = re.compile(r"^\s*aws:region:\s*['\"]?(?P<region>[a-z0-9-]+)['\"]?\s*$", re.MULTILINE)


class RepositoryError(Exception):
    """A repository cannot be made to match (its encryption differs, or it is in another region)."""


def stacks_beside(program_dir: Path = PROGRAM_DIR) -> list[str]:
    """The stacks that have a `Pulumi.<stack>.yaml` next to the program, sorted."""
    return sorted(m["stack"] for p in program_dir.iterdir() if (m := _STACK_FILE.match(p.name)))


def default_stacks(region: str, program_dir: Path = PROGRAM_DIR) -> tuple[list[str], list[str]]:
    """The stack files beside the program split by region: (those deploying to `region` or naming
    none, those naming another). A run for one region makes only the first; the others are named so
    the user runs the setup for their region too."""
    here, elsewhere = [], []
    for stack in stacks_beside(program_dir):
        wanted = stack_region(stack, program_dir)
        (here if wanted in (None, region) else elsewhere).append(stack)
    return here, elsewhere


def stack_region(stack: str, program_dir: Path = PROGRAM_DIR) -> str | None:
    """The `aws:region` the stack file names, or None (no file, or no region in it)."""
    path = program_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        return None
    found = _REGION_LINE.search(path.read_text(encoding="utf-8"))
    return found["region"] if found else None


def _describe(ecr: Any, name: str) -> dict[str, Any] | None:
    try:
        return ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
            return None
        raise


def ensure_repository(ecr: Any, spec: RepositorySpec) -> list[str]:
    """Create `spec`'s repository, or put the settings of the existing one right; return what changed.

    Raises:
        RepositoryError: The existing repository's encryption differs (ECR cannot change it).
    """
    found = _describe(ecr, spec.name)
    if found is None:
        ecr.create_repository(
            repositoryName=spec.name,
            imageTagMutability=spec.mutability,
            imageScanningConfiguration={"scanOnPush": spec.scan_on_push},
            encryptionConfiguration={"encryptionType": spec.encryption},
            tags=[{"Key": k, "Value": v} for k, v in spec.tags.items()],
        )
        return [
            f"created ECR repository {spec.name} ({spec.mutability.lower()} tags, "
            f"scan on push {'on' if spec.scan_on_push else 'off'}, {spec.encryption})"
        ]
    changes = []
    encryption = found.get("encryptionConfiguration", {}).get("encryptionType", "AES256")
    if encryption != spec.encryption:
        raise RepositoryError(
            f"ECR repository {spec.name} is encrypted with {encryption}, the program declares "
            f"{spec.encryption}; ECR cannot change a repository's encryption, and deleting it would "
            "delete its images. Copy the images to a new repository by hand, or change the declaration "
            "(infra/repositories.py)."
        )
    if found.get("imageTagMutability") != spec.mutability:
        ecr.put_image_tag_mutability(repositoryName=spec.name, imageTagMutability=spec.mutability)
        changes.append(f"ECR repository {spec.name}: tags {spec.mutability.lower()}")
    if found.get("imageScanningConfiguration", {}).get("scanOnPush", False) != spec.scan_on_push:
        ecr.put_image_scanning_configuration(
            repositoryName=spec.name, imageScanningConfiguration={"scanOnPush": spec.scan_on_push}
        )
        changes.append(f"ECR repository {spec.name}: scan on push {'on' if spec.scan_on_push else 'off'}")
    arn = found["repositoryArn"]
    tags = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=arn).get("tags", [])}
    wrong = {k: v for k, v in spec.tags.items() if tags.get(k) != v}
    if wrong:
        ecr.tag_resource(resourceArn=arn, tags=[{"Key": k, "Value": v} for k, v in wrong.items()])
        changes.append(f"ECR repository {spec.name}: tags {', '.join(f'{k}={v}' for k, v in wrong.items())}")
    return changes


def ensure_repositories(
    ecr: Any, stacks: Sequence[str], region: str, program_dir: Path = PROGRAM_DIR
) -> list[str]:
    """Both repositories of every stack in `stacks`, in `region`; returns what changed.

    Raises:
        RepositoryError: A stack file names another region (its repositories belong there), or a
            repository cannot be made to match.
    """
    for stack in stacks:
        wanted = stack_region(stack, program_dir)
        if wanted is not None and wanted != region:
            raise RepositoryError(
                f"stack {stack} deploys to {wanted} (Pulumi.{stack}.yaml), not {region}: run "
                f"`python -m account.bootstrap --region {wanted} --stacks {stack}` for it"
            )
    changes = []
    for stack in stacks:
        for spec in stack_repositories(stack):
            changes += ensure_repository(ecr, spec)
    return changes
