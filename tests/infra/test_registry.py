"""The image repositories: made by the account setup before any stack needs them, adopted by the program,
never deleted by it.

The setup (`account/registries.py`) runs against a moto server over real HTTP; the program under
Pulumi's mocks (conftest.run_program). Both read one declaration (`infra/repositories.py`); the test
that compares what the setup made with what the program declares is what keeps the import clean.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest

from account import registries
from account.bootstrap import main
from infra import registry
from infra.repositories import stack_repositories
from tests.infra.conftest import REGION, Deployment, MotoServer, cli_config, run_program

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1,
            "digest": "sha256:" + "cd" * 32,
        },
        "layers": [],
    }
)


def ecr_client(server: MotoServer) -> Any:
    return boto3.client("ecr", region_name=REGION, endpoint_url=server.url)


def as_made(ecr: Any, name: str) -> dict[str, Any]:
    """A repository's settings as ECR reports them, in the program's input names."""
    (repo,) = ecr.describe_repositories(repositoryNames=[name])["repositories"]
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    return {
        "name": repo["repositoryName"],
        "imageTagMutability": repo["imageTagMutability"],
        "imageScanningConfiguration": {"scanOnPush": repo["imageScanningConfiguration"]["scanOnPush"]},
        "encryptionConfigurations": [{"encryptionType": repo["encryptionConfiguration"]["encryptionType"]}],
        "tags": {t["Key"]: t["Value"] for t in tags},
    }


def declared(run: Deployment, name: str) -> dict[str, Any]:
    """The program's inputs for the repository called `name`, in the same shape."""
    (repo,) = [r for r in run.of_type(REPOSITORY) if r.inputs["name"] == name]
    keys = ("name", "imageTagMutability", "imageScanningConfiguration", "encryptionConfigurations", "tags")
    return {k: repo.inputs[k] for k in keys}


# --- the setup, on moto ---------------------------------------------------------------------------


def test_the_setup_makes_each_repository_exactly_as_the_program_imports_it(
    aws_stand_in: MotoServer, prod: Deployment
) -> None:
    ecr = ecr_client(aws_stand_in)
    changes = registries.ensure_repositories(ecr, ["prod"], REGION)
    assert len(changes) == 2, changes
    for spec in stack_repositories("prod"):
        assert as_made(ecr, spec.name) == declared(prod, spec.name)
    images = as_made(ecr, "cali-housing-prod")
    assert images["imageTagMutability"] == "IMMUTABLE"
    assert images["imageScanningConfiguration"] == {"scanOnPush": True}
    assert as_made(ecr, "cali-housing-prod-cache")["imageTagMutability"] == "MUTABLE"


def test_a_second_setup_run_changes_nothing(aws_stand_in: MotoServer) -> None:
    ecr = ecr_client(aws_stand_in)
    assert registries.ensure_repositories(ecr, ["prod", "staging"], REGION) != []
    assert registries.ensure_repositories(ecr, ["prod", "staging"], REGION) == []


def test_a_repository_the_previous_version_made_is_kept_with_its_images(aws_stand_in: MotoServer) -> None:
    ecr = ecr_client(aws_stand_in)
    # As the previous program made it: immutable, scanned, no encryption configuration (ECR's
    # default, AES256), the stack's tags, and an image the server runs.
    ecr.create_repository(
        repositoryName="cali-housing-prod",
        imageTagMutability="IMMUTABLE",
        imageScanningConfiguration={"scanOnPush": True},
        tags=[{"Key": k, "Value": v} for k, v in stack_repositories("prod")[0].tags.items()],
    )
    pushed = ecr.put_image(repositoryName="cali-housing-prod", imageManifest=MANIFEST, imageTag="content-1")
    before = ecr.describe_repositories(repositoryNames=["cali-housing-prod"])["repositories"][0]
    changes = registries.ensure_repositories(ecr, ["prod"], REGION)
    assert changes == [c for c in changes if "cali-housing-prod-cache" in c], "only the cache is new"
    after = ecr.describe_repositories(repositoryNames=["cali-housing-prod"])["repositories"][0]
    assert after["createdAt"] == before["createdAt"], "the same repository, not a new one"
    (image,) = ecr.describe_images(repositoryName="cali-housing-prod")["imageDetails"]
    assert image["imageDigest"] == pushed["image"]["imageId"]["imageDigest"]


def test_a_hand_changed_repository_is_put_back(aws_stand_in: MotoServer) -> None:
    ecr = ecr_client(aws_stand_in)
    registries.ensure_repositories(ecr, ["prod"], REGION)
    ecr.put_image_tag_mutability(repositoryName="cali-housing-prod", imageTagMutability="MUTABLE")
    ecr.put_image_scanning_configuration(
        repositoryName="cali-housing-prod", imageScanningConfiguration={"scanOnPush": False}
    )
    changes = registries.ensure_repositories(ecr, ["prod"], REGION)
    assert any("immutable" in c for c in changes)
    assert any("scan on push on" in c for c in changes)
    assert registries.ensure_repositories(ecr, ["prod"], REGION) == []


def test_a_repository_encrypted_otherwise_is_refused_and_left_alone(aws_stand_in: MotoServer) -> None:
    ecr = ecr_client(aws_stand_in)
    ecr.create_repository(
        repositoryName="cali-housing-prod", encryptionConfiguration={"encryptionType": "KMS"}
    )
    with pytest.raises(registries.RepositoryError, match="cannot change a repository's encryption"):
        registries.ensure_repositories(ecr, ["prod"], REGION)
    assert ecr.describe_repositories(repositoryNames=["cali-housing-prod"])["repositories"]


def test_a_stack_of_another_region_is_refused_before_anything_is_made(aws_stand_in: MotoServer) -> None:
    ecr = ecr_client(aws_stand_in)
    with pytest.raises(registries.RepositoryError, match="--region us-east-1 --stacks prod"):
        registries.ensure_repositories(ecr, ["staging", "prod"], "eu-west-1")
    assert ecr.describe_repositories()["repositories"] == []


def test_the_default_stacks_are_the_stack_files_beside_the_program(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: x\n")
    (tmp_path / "Pulumi.prod.yaml").write_text("config:\n  aws:region: us-east-1\n")
    (tmp_path / "Pulumi.staging.yaml").write_text("config:\n  aws:region: 'eu-west-1'\n")
    (tmp_path / "Pulumi.dev.yaml").write_text("config: {}\n")
    assert registries.stacks_beside(tmp_path) == ["dev", "prod", "staging"]
    assert registries.default_stacks("us-east-1", tmp_path) == (["dev", "prod"], ["staging"])
    assert "prod" in registries.stacks_beside()  # this checkout's Pulumi.prod.yaml


def test_the_bootstrap_makes_the_repositories_of_the_stacks_given(aws_stand_in: MotoServer) -> None:
    assert main(["--region", REGION, "--endpoint-url", aws_stand_in.url, "--stacks", "prod", "staging"]) == 0
    names = {r["repositoryName"] for r in ecr_client(aws_stand_in).describe_repositories()["repositories"]}
    assert names == {
        "cali-housing-prod",
        "cali-housing-prod-cache",
        "cali-housing-staging",
        "cali-housing-staging-cache",
    }


# --- the program: adopt, never delete ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["prod", "fleet"])
def test_both_repositories_are_imported_protected_retained_and_never_force_deleted(
    mode: str, request: pytest.FixtureRequest
) -> None:
    run: Deployment = request.getfixturevalue(mode)
    repos = run.of_type(REPOSITORY)
    assert sorted(r.import_id for r in repos) == ["cali-housing-prod", "cali-housing-prod-cache"]
    for repo in repos:
        assert repo.import_id == repo.inputs["name"], "the id ECR knows it by is its name"
        assert repo.protect, repo.name
        assert repo.retain_on_delete, repo.name
        assert not repo.inputs.get("forceDelete"), repo.name
    # the lifecycle policies expire images, they never hold them: ordinary resources
    assert all(not p.protect for p in run.of_type(LIFECYCLE))


def test_the_repositories_keep_the_urns_of_the_previous_version(prod: Deployment) -> None:
    # A stack the previous version made holds them under these URNs with the same ids, so the engine
    # diffs instead of importing (docs/deploy.md, migration).
    parent = "cali:aws:Registry$aws:ecr/repository:Repository"
    assert {r.urn for r in prod.of_type(REPOSITORY)} == {
        f"urn:pulumi:prod::cali-housing::{parent}::cali-repo",
        f"urn:pulumi:prod::cali-housing::{parent}::cali-cache-repo",
    }


def test_the_program_checks_both_repositories_before_registering_anything(prod: Deployment) -> None:
    assert prod.required_repositories == ["cali-housing-prod", "cali-housing-prod-cache"]


def test_a_stack_without_its_repositories_stops_naming_the_setup_command(
    aws_stand_in: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_stand_in.url)
    ecr = ecr_client(aws_stand_in)
    ecr.create_repository(repositoryName="cali-housing-staging")  # the cache is missing
    with pytest.raises(registry.MissingRepositoryError) as err:
        registry.require_repositories(
            ["cali-housing-staging", "cali-housing-staging-cache"], "staging", REGION
        )
    message = str(err.value)
    assert "cali-housing-staging-cache" in message
    assert "cali-housing-staging," not in message
    assert "make bootstrap" in message
    assert f"python -m account.bootstrap --region {REGION} --stacks staging" in message
    registries.ensure_repositories(ecr, ["staging"], REGION)
    registry.require_repositories(["cali-housing-staging", "cali-housing-staging-cache"], "staging", REGION)


def test_a_missing_repository_stops_the_program_before_it_registers_anything() -> None:
    run = Deployment()
    with pytest.raises(registry.MissingRepositoryError, match="make bootstrap"):
        run_program(cli_config("prod"), run, ecr_repositories={"cali-housing-prod"})
    assert [r.typ for r in run.resources if r.custom] == []
