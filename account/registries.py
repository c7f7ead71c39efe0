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


# --- migrating a stack whose state holds auto-named repositories ----------------------------------

PROJECT_NAME = "cali-housing"  # Pulumi.yaml's `name`, the URNs' project part
# The program's repositories (infra/registry.py): children of the `cali` Registry component, under
# the logical names the previous version used, so a stack it made keeps its URNs.
REPOSITORY_TYPE = "cali:aws:Registry$aws:ecr/repository:Repository"
LOGICAL_NAMES = ("cali-repo", "cali-cache-repo")


def repository_urns(stack: str) -> list[str]:
    """The URNs under which the program registers `stack`'s two repositories."""
    return [f"urn:pulumi:{stack}::{PROJECT_NAME}::{REPOSITORY_TYPE}::{name}" for name in LOGICAL_NAMES]


def keep_in_state(state: dict[str, Any], stack: str) -> list[str]:
    """Mark the repositories in an exported state (`pulumi stack export`) retain-on-delete, in place.

    A stack made by the oldest version holds them under auto-named ids (cali-repo-1a2b3c4); the next
    `up` imports the fixed-name repository at the same URN and, the id differing, replaces the old
    entry, whose deletion runs with the OLD state's options: `force_delete` on, so ECR would delete
    the repository and every image. With `retainOnDelete` in the state, the engine's delete step is
    a no-op ("Deleting a 'drop on delete' is a no-op", pulumi/pulumi pkg/resource/deploy/step.go,
    DeleteStep.Apply) and the old repository stays, images and all. `pulumi state delete` cannot do
    this: it refuses a resource others depend on (the lifecycle policy, the server role's policy, the
    instance's boot script read the repository; pulumi/pulumi pkg/resource/edit/operations.go,
    DeleteResource), and with --target-dependents it would make Pulumi forget the server too.

    Returns:
        The URNs changed (empty when they already were retained).

    Raises:
        RepositoryError: The state holds neither repository (another stack's export, or the wrong file).
    """
    wanted = set(repository_urns(stack))
    found = [r for r in state.get("deployment", {}).get("resources", []) if r.get("urn") in wanted]
    if not found:
        raise RepositoryError(
            f"the exported state holds none of {sorted(wanted)}: is it `pulumi stack export --stack {stack}`?"
        )
    changed = []
    for resource in found:
        if not resource.get("retainOnDelete"):
            resource["retainOnDelete"] = True
            changed.append(resource["urn"])
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m account.registries keep-in-state FILE --stack S` (docs/deploy.md, migration)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m account.registries", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    keep = commands.add_parser(
        "keep-in-state", help="mark the stack's repositories retain-on-delete in an export"
    )
    keep.add_argument(
        "file", type=Path, help="the file `pulumi stack export --file` wrote; rewritten in place"
    )
    keep.add_argument("--stack", required=True)
    args = parser.parse_args(argv)
    state = json.loads(args.file.read_text(encoding="utf-8"))
    try:
        changed = keep_in_state(state, args.stack)
    except RepositoryError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    args.file.write_text(json.dumps(state, indent=4) + "\n", encoding="utf-8")
    for urn in changed:
        print(f"retain on delete: {urn}")
    if not changed:
        print("both repositories were already retained; nothing changed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
