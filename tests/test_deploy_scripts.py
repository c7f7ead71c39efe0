"""The deploy job's shell scripts, run for real against fake `pulumi`, `aws` and `docker` on PATH.

Each fake logs its arguments and answers from files the test writes, so a test sees every command
a script ran, in order, and what it did with the answers: scripts/publish-image.sh (push the tested
image into the repository the account setup made, never a targeted `up`) and
scripts/stack-outputs.sh (the live stack's outputs, read fail-closed).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra.release import repository_name

ROOT = Path(__file__).resolve().parent.parent
REPO_URI = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/{repository_name('prod')}"
TAG = "content-0123456789abcdef0123456789abcdef"

FAKE = """#!/usr/bin/env bash
# a stand-in: log the call, then answer from $FAKES/<tool>.<first two args> files when they exist
tool=$(basename "$0")
printf '%s %s\\n' "$tool" "$*" >>"$FAKES/calls"
key="$FAKES/$tool.${1:-}.${2:-}"
[[ -f "$key.err" ]] && { cat "$key.err" >&2; exit "$(cat "$key.rc" 2>/dev/null || echo 1)"; }
[[ -f "$key.out" ]] && cat "$key.out"
exit 0
"""


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """A bin directory with fake pulumi, aws and docker (and the test's python as `python`)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("pulumi", "aws", "docker"):
        (bin_dir / tool).write_text(FAKE)
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "python").symlink_to(sys.executable)
    return tmp_path


def answer(fakes: Path, tool: str, first: str, second: str, out: str = "", *, fail: str = "") -> None:
    key = fakes / f"{tool}.{first}.{second}"
    if fail:
        key.with_name(key.name + ".err").write_text(fail)
        key.with_name(key.name + ".rc").write_text("254")
    else:
        key.with_name(key.name + ".out").write_text(out)


Ran = tuple[subprocess.CompletedProcess, dict[str, str], list[str]]


def run(script: str, fakes: Path, **env: str) -> Ran:
    """Run scripts/<script> with the fakes first on PATH; returns (result, its outputs, the calls)."""
    outputs = fakes / "github_output"
    outputs.write_text("")
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={
            "PATH": f"{fakes / 'bin'}{os.pathsep}{os.environ['PATH']}",
            "FAKES": str(fakes),
            "GITHUB_OUTPUT": str(outputs),
            **env,
        },
    )
    written = dict(line.split("=", 1) for line in outputs.read_text().splitlines())
    calls = (fakes / "calls").read_text().splitlines() if (fakes / "calls").exists() else []
    return done, written, calls


PUBLISH = {"STACK": "prod", "LOCAL_IMAGE": "cali-housing:release", "TAG": TAG, "AWS_REGION": "us-east-1"}


def test_publishing_to_a_stack_whose_repository_is_missing_says_to_run_the_bootstrap(fakes: Path) -> None:
    answer(fakes, "aws", "ecr", "describe-repositories", fail="RepositoryNotFoundException: not found")
    done, written, calls = run("publish-image.sh", fakes, **PUBLISH)
    assert done.returncode == 1
    assert "make bootstrap" in done.stderr
    assert repository_name("prod") in done.stderr
    assert "RepositoryNotFoundException" in done.stderr
    assert not [c for c in calls if c.startswith("docker")], "nothing is pushed"
    assert not [c for c in calls if c.startswith("pulumi")], "and no targeted up creates it"
    assert written == {}


def test_a_new_tag_is_pushed_with_plain_docker_into_the_bootstrap_repository(fakes: Path) -> None:
    answer(fakes, "aws", "ecr", "describe-repositories", REPO_URI + "\n")
    answer(fakes, "aws", "ecr", "describe-images", fail="ImageNotFoundException")
    answer(fakes, "docker", "image", "inspect", "label-value\n")
    done, written, calls = run("publish-image.sh", fakes, **PUBLISH)
    assert done.returncode == 0, done.stderr
    assert f"docker tag cali-housing:release {REPO_URI}:{TAG}" in calls
    assert f"docker push --quiet {REPO_URI}:{TAG}" in calls
    login = "docker login --username AWS --password-stdin 123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert login in calls
    assert not [c for c in calls if c.startswith("pulumi")], "publishing runs no Pulumi at all"
    assert written["repository"] == REPO_URI
    assert written["pushed"] == "true"
    assert written["revision"] == "label-value"


def test_a_tag_already_in_ecr_is_pulled_and_never_pushed_again(fakes: Path) -> None:
    answer(fakes, "aws", "ecr", "describe-repositories", REPO_URI + "\n")
    answer(fakes, "aws", "ecr", "describe-images", "{}")
    done, written, calls = run("publish-image.sh", fakes, **PUBLISH)
    assert done.returncode == 0, done.stderr
    assert f"docker pull --quiet {REPO_URI}:{TAG}" in calls
    assert not [c for c in calls if c.startswith("docker push")]
    assert written["pushed"] == "false"


STACK = {"STACK": "prod", "PULUMI_BACKEND_URL": "s3://bucket?region=us-east-1"}


def test_a_stack_with_a_url_is_not_a_first_deploy_and_its_digest_is_kept_for_rollback(fakes: Path) -> None:
    image = f"{REPO_URI}@sha256:{'a' * 64}"
    outputs = f'{{"url": "http://203.0.113.10", "image": "{image}", "ingress_group": "sg-0abc"}}'
    answer(fakes, "pulumi", "stack", "output", outputs)
    done, written, calls = run("stack-outputs.sh", fakes, **STACK)
    assert done.returncode == 0, done.stderr
    assert written == {
        "url": "http://203.0.113.10",
        "image": image,
        "ingress_group": "sg-0abc",
        "first_deploy": "false",
    }
    assert "pulumi stack output --json --stack prod" in calls


def test_a_stack_without_a_url_output_is_a_first_deploy(fakes: Path) -> None:
    answer(fakes, "pulumi", "stack", "output", "{}")
    done, written, calls = run("stack-outputs.sh", fakes, **STACK)
    assert done.returncode == 0, done.stderr
    assert written == {"url": "", "image": "", "ingress_group": "", "first_deploy": "true"}
    provider = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["secretsprovider"]
    select = f"pulumi stack select --create --secrets-provider {provider} prod"
    assert calls.index(select) < calls.index("pulumi stack output --json --stack prod"), (
        "a brand-new stack is created empty, so its outputs read as {}"
    )


def test_a_new_stack_is_created_with_the_stack_files_kms_secrets_provider(fakes: Path) -> None:
    # without it a DIY backend makes a passphrase-encrypted stack, which CI cannot decrypt
    answer(fakes, "pulumi", "stack", "output", "{}")
    _, _, calls = run("stack-outputs.sh", fakes, **STACK)
    (select,) = [c for c in calls if c.startswith("pulumi stack select")]
    provider = yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["secretsprovider"]
    assert select == f"pulumi stack select --create --secrets-provider {provider} prod"


@pytest.mark.parametrize(
    ("out", "fail"),
    [
        ("", "error: failed to load checkpoint: AccessDenied: Access Denied"),  # backend or permission
        ("not json at all", ""),  # a garbled answer is no answer
        ('{"url": 42}', ""),  # a url that is not a string
    ],
)
def test_a_stack_output_that_cannot_be_read_stops_the_job_instead_of_passing(
    fakes: Path, out: str, fail: str
) -> None:
    answer(fakes, "pulumi", "stack", "output", out, fail=fail)
    done, written, _ = run("stack-outputs.sh", fakes, **STACK)
    assert done.returncode != 0
    assert "first_deploy" not in written, "never read as a first deploy"
