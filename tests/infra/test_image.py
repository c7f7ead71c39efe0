"""The image: found in ECR by its content tag (no build), built once with a registry cache, or rolled back.

The program runs under Pulumi's mocks (conftest.run_program) with ECR's answer given; the lookup
itself, `infra.registry.find_image`, runs against a real moto server on loopback.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import boto3
import botocore.exceptions
import pytest
from botocore.stub import Stubber

from infra import registry, release
from tests.infra.conftest import (
    ACCOUNT,
    BUILD_TYPE,
    DIGEST,
    REGION,
    ROOT,
    SECRET_SIG,
    Deployment,
    MotoServer,
    cli_config,
    run_program,
)

INSTANCE = "aws:ec2/instance:Instance"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
REPO = release.repository_name("prod")
REPO_URL = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{REPO}"
CACHE_URL = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{release.cache_repository_name('prod')}"
PUSHED = "sha256:" + "5e" * 32
TAG_OF_CHECKOUT: list[str] = []


def checkout_tag() -> str:
    """This checkout's content tag, computed once per session (not at import)."""
    if not TAG_OF_CHECKOUT:
        TAG_OF_CHECKOUT.append(release.content_tag(ROOT))
    return TAG_OF_CHECKOUT[0]


def content_config(**overrides: object) -> dict[str, str]:
    """The prod stack's config with imageTag left empty, as a user and CI leave it: the content tag."""
    return cli_config(imageTag="", **overrides)


@pytest.fixture(scope="module")
def found() -> Deployment:
    """`pulumi up` when ECR already holds this checkout's content tag."""
    return run_program(content_config(), ecr_images={(REPO, checkout_tag()): PUSHED})


@pytest.fixture(scope="module")
def built() -> Deployment:
    """`pulumi up` when it does not (a laptop's first deploy of new content)."""
    return run_program(content_config())


# --- found: deploy the existing digest, build nothing -------------------------------------------


def test_the_program_asks_ecr_for_the_content_tag_of_this_checkout(found: Deployment) -> None:
    assert found.lookups == [(REPO, checkout_tag(), REGION)]
    assert checkout_tag().startswith(release.TAG_PREFIX)


def test_a_tag_already_in_ecr_registers_no_build_and_the_boot_script_names_its_digest(
    found: Deployment,
) -> None:
    assert found.of_type(BUILD_TYPE) == []
    assert "aws:ecr/getAuthorizationToken:getAuthorizationToken" not in [c for c, _ in found.calls]
    assert found.exports["image"] == f"{REPO_URL}@{PUSHED}"
    assert f"IMAGE={REPO_URL}@{PUSHED} " in found.one(INSTANCE).inputs["userData"]


def test_a_fleet_with_the_tag_in_ecr_puts_the_same_digest_in_its_launch_template() -> None:
    fleet = run_program(content_config(mode="fleet"), ecr_images={(REPO, checkout_tag()): PUSHED})
    assert fleet.of_type(BUILD_TYPE) == []
    (template,) = fleet.of_type(LAUNCH_TEMPLATE)
    assert f"IMAGE={REPO_URL}@{PUSHED} " in base64.b64decode(template.inputs["userData"]).decode()


def test_a_docs_only_commit_keeps_the_tag_and_the_boot_script_byte_identical(tmp_path: Path) -> None:
    # A clean copy of the checkout, committed; then a commit that touches only docs, tests and infra.
    checkout = copy_checkout(tmp_path / "repo")
    git(checkout, "init", "-q")
    git(checkout, "add", "-A")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "first")
    before = release.content_tag(checkout)
    (checkout / "README.md").write_text("docs only\n")
    (checkout / "tests" / "test_new.py").write_text("# a new test\n")
    (checkout / "infra" / "note.py").write_text("# infra, not in the image\n")
    git(checkout, "add", "-A")
    git(checkout, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "docs")
    assert release.content_tag(checkout) == before

    # The program, given that tag in ECR, renders the same boot script for both commits: the
    # revision is not in it, so nothing about the server changes.
    first = run_program(cli_config(imageTag=before), ecr_images={(REPO, before): PUSHED})
    second = run_program(cli_config(imageTag=before), ecr_images={(REPO, before): PUSHED})
    assert first.one(INSTANCE).inputs["userData"] == second.one(INSTANCE).inputs["userData"]


def test_a_change_the_image_copies_changes_the_tag(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "repo")
    before = release.content_tag(checkout)
    for changed in ("service/routes.py", "requirements/runtime.txt", "Dockerfile", "constraints.txt"):
        path = checkout / changed
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert release.content_tag(checkout) != before, changed
        path.write_bytes(original)
    assert release.content_tag(checkout) == before


def test_the_staged_dataset_never_enters_the_tag(tmp_path: Path) -> None:
    # `make docker` stages the dataset in .build-data/ (the build context sends it); a laptop `up`
    # after it must find the image CI pushed, not build a second one and replace the server.
    checkout = copy_checkout(tmp_path / "repo")
    git(checkout, "init", "-q")
    before = release.content_tag(checkout)
    staged = checkout / ".build-data" / "scikit_learn_data"
    staged.mkdir(parents=True)
    (staged / "cal_housing_py3.pkz").write_bytes(b"data")
    assert ".build-data/scikit_learn_data/cal_housing_py3.pkz" in release.context_files(checkout)
    assert release.content_tag(checkout) == before


def test_make_docker_leaves_no_build_data_behind(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "repo")
    git(checkout, "init", "-q")
    before = release.content_tag(checkout)
    data = tmp_path / "sklearn"
    data.mkdir()
    (data / "cal_housing_py3.pkz").write_bytes(b"data")
    # A stand-in docker: the build must see the staged data; `run` answers the model version.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text(
        "#!/bin/bash\n"
        'if [[ "$1" == build ]]; then test -f .build-data/scikit_learn_data/cal_housing_py3.pkz; exit; fi\n'
        'if [[ "$1" == run ]]; then echo 0123abcd; fi\n'
    )
    (bin_dir / "docker").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["make", "docker", f"SKLEARN_DATA={data}", "IMAGE=i21-infra-test"],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not (checkout / ".build-data").exists()
    assert release.content_tag(checkout) == before


def test_bytecode_and_what_dockerignore_leaves_out_do_not_count(tmp_path: Path) -> None:
    checkout = copy_checkout(tmp_path / "repo")
    before = release.content_tag(checkout)
    (checkout / "service" / "__pycache__").mkdir(exist_ok=True)
    (checkout / "service" / "__pycache__" / "routes.cpython-311.pyc").write_bytes(b"\0")
    (checkout / "requirements" / "dev.txt").write_text("pytest==0\n")  # tools, not the image's
    (checkout / "artifacts").mkdir(exist_ok=True)
    (checkout / "artifacts" / "metadata.json").write_text("{}")
    assert release.content_tag(checkout) == before


def test_the_hashed_files_are_the_ones_the_dockerfile_copies() -> None:
    files = release.context_files(ROOT)
    assert "service/routes.py" in files
    assert "model/schema.py" in files
    assert {"constraints.txt", "requirements/runtime.txt", "requirements/train.txt"} <= set(files)
    assert not [f for f in files if f.startswith(("tests/", "infra/", "docs/", ".github/", "README"))]


def test_the_release_command_prints_what_ci_reads() -> None:
    done = subprocess.run(
        ["python3", "-S", "-m", "infra.release", "--stack", "staging"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = dict(line.split("=", 1) for line in done.stdout.splitlines())
    assert lines == {
        "tag": checkout_tag(),
        "repository": "cali-housing-staging",
        "cache_repository": "cali-housing-staging-cache",
        "platform": "linux/amd64",
        "revision_label": "org.opencontainers.image.revision",
        "model_version_label": "org.opencontainers.image.version",
        "revision_arg": "GIT_REVISION",
        "model_version_arg": "MODEL_VERSION",
    }


# --- missing: one build, pushed under the content tag, with the registry cache ------------------


def test_a_missing_tag_registers_one_build_for_amd64_pushed_under_the_content_tag(built: Deployment) -> None:
    image = built.one(BUILD_TYPE).inputs
    assert image["tags"] == [f"{REPO_URL}:{checkout_tag()}"]
    assert image["push"] is True
    assert image["platforms"] == ["linux/amd64"]
    assert image["context"] == {"location": "."}
    assert image["dockerfile"] == {"location": "Dockerfile"}
    assert built.exports["image"] == f"{REPO_URL}@{DIGEST}"


def test_the_build_reads_and_writes_the_cache_in_its_own_repository(built: Deployment) -> None:
    image = built.one(BUILD_TYPE).inputs
    ref = f"{CACHE_URL}:{release.CACHE_TAG}"
    assert image["cacheFrom"] == [{"registry": {"ref": ref}}]
    (cache_to,) = image["cacheTo"]
    wanted = {"ref": ref, "imageManifest": True, "ociMediaTypes": True, "mode": "max", "ignoreError": False}
    assert {k: cache_to["registry"][k] for k in wanted} == wanted


def test_the_build_records_the_revision_as_a_build_argument_not_in_the_tag(built: Deployment) -> None:
    image = built.one(BUILD_TYPE).inputs
    revision = image["buildArgs"][release.REVISION_ARG]
    assert revision
    assert revision not in checkout_tag()


def test_the_build_logs_in_with_the_ecr_token_kept_secret(built: Deployment) -> None:
    (creds,) = built.one(BUILD_TYPE).raw["registries"]
    assert creds["address"] == f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
    assert creds["username"] == "AWS"
    assert SECRET_SIG in creds["password"].values(), "the ECR password must be secret"


def test_the_build_survives_its_own_removal_from_the_program(built: Deployment) -> None:
    # The next `up` finds the tag and drops the build resource; deleting it would delete the pushed tag.
    assert built.one(BUILD_TYPE).retain_on_delete is True


# --- repositories ---------------------------------------------------------------------------------


def test_the_image_repository_is_named_for_the_stack_immutable_and_scanned(built: Deployment) -> None:
    (repo,) = [r.inputs for r in built.of_type("aws:ecr/repository:Repository") if r.inputs["name"] == REPO]
    assert repo["imageTagMutability"] == "IMMUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": True}


def test_ecr_keeps_the_images_a_rollback_needs_and_expires_old_caches(built: Deployment) -> None:
    policies = {
        p.inputs["repository"]: json.loads(p.inputs["policy"])["rules"]
        for p in built.of_type("aws:ecr/lifecyclePolicy:LifecyclePolicy")
    }
    (keep,) = policies[REPO]
    assert keep["selection"] == {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 10}
    (expire,) = policies[release.cache_repository_name("prod")]
    assert expire["selection"]["tagStatus"] == "untagged"


# --- rollback -------------------------------------------------------------------------------------


def test_rollback_deploys_an_existing_digest_without_building_or_looking_up_the_tag() -> None:
    earlier = "sha256:" + "cd" * 32
    deployment = run_program(content_config(imageDigest=earlier), ecr_images={(REPO, checkout_tag()): PUSHED})
    assert deployment.of_type(BUILD_TYPE) == []
    assert deployment.lookups == [], "a rollback ignores what the content tag names"
    assert ("aws:ecr/getImage:getImage", {"repositoryName": REPO, "imageDigest": earlier}) in deployment.calls
    assert deployment.exports["image"] == f"{REPO_URL}@{earlier}"
    assert f"IMAGE={REPO_URL}@{earlier} " in deployment.one(INSTANCE).inputs["userData"]


# --- find_image against moto ----------------------------------------------------------------------


def test_find_image_returns_the_pushed_digest_and_none_when_absent(
    aws_stand_in: MotoServer, monkeypatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws_stand_in.url)
    ecr = boto3.client("ecr", region_name=REGION)
    # No repository is not "no image": the setup has not run, and the error says which command to run.
    with pytest.raises(registry.MissingRepositoryError, match="--stacks prod"):
        registry.find_image(REPO, checkout_tag(), REGION, "prod")
    ecr.create_repository(repositoryName=REPO, imageTagMutability="IMMUTABLE")
    assert registry.find_image(REPO, checkout_tag(), REGION, "prod") is None, "a repository without the tag"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1,
                "digest": DIGEST,
            },
            "layers": [],
        }
    )
    pushed = ecr.put_image(repositoryName=REPO, imageManifest=manifest, imageTag=checkout_tag())["image"][
        "imageId"
    ]
    assert registry.find_image(REPO, checkout_tag(), REGION, "prod") == pushed["imageDigest"]
    assert registry.find_image(REPO, "content-other", REGION, "prod") is None


def test_find_image_fails_loudly_when_ecr_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    # "not found" means build; "could not ask" must stop the deploy, never pass for "not found"
    client = boto3.client("ecr", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")  # noqa: S106
    stubber = Stubber(client)
    stubber.add_client_error(
        "describe_images", service_error_code="AccessDeniedException", http_status_code=400
    )
    monkeypatch.setattr(registry.boto3, "client", lambda *_a, **_k: client)
    with stubber, pytest.raises(botocore.exceptions.ClientError, match="AccessDenied"):
        registry.find_image(REPO, checkout_tag(), REGION, "prod")


# --- helpers --------------------------------------------------------------------------------------


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, timeout=60)


def copy_checkout(dest: Path) -> Path:
    """The files git tracks, copied: a fresh clone without .git."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, text=True)
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest
