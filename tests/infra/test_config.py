"""The stack config: every key declared, typed, defaulted and read; every bad value refused early."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.config import StackConfigError, git_revision
from tests.infra.conftest import (
    PROJECT,
    Deployment,
    cli_config,
    full_key,
    project_file,
    run_program,
    stack_file,
)

# Keys of other namespaces a stack file may set, and the program reads.
PROVIDER_KEYS = {"aws:region"}
# Declared without a default on purpose: the bucket name is per account (the bootstrap prints it).
REQUIRED_KEYS = {"stateBucket"}


def declared() -> set[str]:
    return {full_key(key) for key in project_file()["config"]}


def test_every_prod_key_is_declared_in_pulumi_yaml() -> None:
    for key in stack_file("prod")["config"]:
        namespace = key.split(":", 1)[0]
        if namespace == PROJECT:
            assert key in declared(), f"{key} is set in Pulumi.prod.yaml but not declared in Pulumi.yaml"
        else:
            assert key in PROVIDER_KEYS, f"{key}: unexpected config namespace"


def test_every_declared_and_prod_key_is_read_by_the_program(prod: Deployment) -> None:
    keys = declared() | set(stack_file("prod")["config"])
    assert keys - prod.config_reads == set(), "config that nothing reads (orphan or misspelt)"
    assert prod.config_reads - keys == set(), "the program reads config that Pulumi.yaml does not declare"


def test_every_declared_key_has_a_type_a_description_and_a_default() -> None:
    assert project_file()["name"] == PROJECT
    for key, decl in project_file()["config"].items():
        assert decl.get("type") in {"string", "integer", "boolean", "array"}, key
        assert len(decl.get("description", "")) > 20, f"{key} needs a description"
        assert ("default" in decl) != (key in REQUIRED_KEYS), f"{key}: a default unless required"


def test_project_runs_python_from_the_repository_venv() -> None:
    runtime = project_file()["runtime"]
    assert runtime["name"] == "python"
    assert runtime["options"]["virtualenv"] == ".venv"
    assert project_file()["description"]


@pytest.mark.parametrize(
    ("key", "value", "says"),
    [
        ("allowedCidrs", ["10.0.0.1/8"], "has host bits set"),
        ("allowedCidrs", ["not-a-cidr"], "IPv4 networks"),
        ("allowedCidrs", ["2001:db8::/32"], "IPv4 networks"),
        ("allowedCidrs", [], "non-empty"),
        ("allowedCidrs", "0.0.0.0/0", "a list"),
        ("appPort", "eighty", "an integer"),
        ("appPort", 22, "not 22"),
        ("appPort", 0, "1 to 65535"),
        ("appPort", 70000, "1 to 65535"),
        ("instanceType", "t4g.small", "x86_64"),
        ("instanceType", "large", "instance type name"),
        ("logRetentionDays", 10, "one of 1, 3, 5, 7, 14"),
        ("stateNoncurrentDays", 0, "from 1 to 3650"),
        ("keepImages", 0, "from 1 to 1000"),
        ("rootVolumeGb", 4, "from 8 to 1024"),
        ("imageTag", "has space", "Docker tag"),
        ("ami", "ubuntu-latest", "AMI id"),
        ("imageDigest", "sha256:abc", "sha256:<64 hex>"),
        ("stateBucket", "Bad_Bucket", "S3 bucket name"),
    ],
)
def test_invalid_config_fails_before_any_resource_naming_the_key(key: str, value: Any, says: str) -> None:
    deployment = Deployment()
    with pytest.raises(StackConfigError) as raised:
        run_program(cli_config(**{key: value}), deployment)
    assert raised.value.key == key
    assert f"{PROJECT}:{key}" in str(raised.value)
    assert says in str(raised.value)
    assert deployment.resources == [], "resources were registered before the config was checked"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=30)


def test_the_revision_is_the_commit_and_marks_a_dirty_tree(tmp_path: Path) -> None:
    _git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("1")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "x")
    sha = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_revision(tmp_path) == sha
    (tmp_path / "f").write_text("2")
    assert git_revision(tmp_path) == f"{sha}-dirty"


def test_the_revision_outside_git_is_unknown_and_deploys_anyway(tmp_path: Path) -> None:
    # the image is named by content, so no commit is needed to deploy; the revision is a record
    assert git_revision(tmp_path) == "unknown"
