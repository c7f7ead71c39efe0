"""The group probes: a docker client that cannot build the image, or an AWS CLI that cannot reach moto,
skips its group with the reason and the fix.

Each case puts a stand-in `docker` first on PATH that answers as that kind of client does (its
messages are the real clients' own, seen on this machine: Docker 28.2.2 without buildx and Debian's
20.10.24), so the probe's decision and its wording are pinned without depending on which Docker this
machine has.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from testkit.docker import buildkit_problem
from tests.conftest import awscli_available

NO_BUILDX_28 = """#!/bin/sh
case "$1" in
  version) echo 28.2.2 ;;
  buildx) echo "docker: 'buildx' is not a docker command." >&2; exit 1 ;;
  build) if [ "$DOCKER_BUILDKIT" = 1 ]; then
           echo "ERROR: BuildKit is enabled but the buildx component is missing or broken." >&2
         else echo "unknown flag: --output" >&2; fi; exit 1 ;;
esac
"""
DEBIAN_20 = """#!/bin/sh
case "$1" in
  version) echo 20.10.24+dfsg1 ;;
  buildx) echo "docker: 'buildx' is not a docker command." >&2; exit 1 ;;
  build) [ "$DOCKER_BUILDKIT" = 1 ] && exit 0
         echo "the --chmod option requires BuildKit." >&2; exit 1 ;;
esac
"""


def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, buildkit: str | None) -> None:
    """Put a stand-in docker client first on PATH, with DOCKER_BUILDKIT as given."""
    (tmp_path / "docker").write_text(script)
    (tmp_path / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    if buildkit is None:
        monkeypatch.delenv("DOCKER_BUILDKIT", raising=False)
    else:
        monkeypatch.setenv("DOCKER_BUILDKIT", buildkit)


@pytest.mark.parametrize("buildkit", [None, "1"])
def test_a_new_client_without_buildx_is_reported_with_the_package_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, buildkit: str | None
) -> None:
    client(tmp_path, monkeypatch, NO_BUILDX_28, buildkit)
    reason = buildkit_problem()
    assert reason is not None
    assert "28.2.2" in reason
    assert "has no buildx plugin" in reason
    assert "apt-get install docker-buildx" in reason
    assert "docker-buildx-plugin" in reason


def test_an_old_client_is_told_to_ask_for_buildkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client(tmp_path, monkeypatch, DEBIAN_20, None)
    reason = buildkit_problem()
    assert reason is not None
    assert "export DOCKER_BUILDKIT=1" in reason


def test_a_client_that_builds_with_buildkit_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client(tmp_path, monkeypatch, DEBIAN_20, "1")
    assert buildkit_problem() is None


@pytest.mark.parametrize(
    ("version", "usable"),
    [
        ("aws-cli/2.9.19 Python/3.11.2", False),
        ("aws-cli/2.15.0 Python/3.11.6", True),
        ("aws-cli/1.46.2", True),
    ],
)
def test_an_aws_cli_that_ignores_aws_endpoint_url_is_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, usable: bool
) -> None:
    (tmp_path / "aws").write_text(f"#!/bin/sh\necho '{version}'\n")
    (tmp_path / "aws").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    awscli_available.cache_clear()
    try:
        reason = awscli_available()
    finally:
        awscli_available.cache_clear()
    assert (reason is None) == usable, reason
    if not usable:
        assert "ignores AWS_ENDPOINT_URL" in reason


def test_no_aws_cli_names_where_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    awscli_available.cache_clear()
    try:
        reason = awscli_available()
    finally:
        awscli_available.cache_clear()
    assert reason is not None
    assert "install AWS CLI v2" in reason
