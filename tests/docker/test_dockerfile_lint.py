"""The Dockerfile passes hadolint and keeps to what this machine's engine and base image allow."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.fail("hadolint is not installed (it comes with requirements/dev.txt: make dev)")
    done = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_has_no_syntax_line_and_no_hardcoded_interpreter() -> None:
    text = DOCKERFILE.read_text()
    # a `# syntax=` line makes BuildKit pull a frontend image, which no registry here can serve
    assert not text.lstrip().lower().startswith("# syntax")
    assert "/usr/local/bin/python" not in text
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
