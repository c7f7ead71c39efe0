"""Service settings come from the environment in one place, and bad values name their variable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from service.config import ConfigError, ServiceSettings

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_when_nothing_is_set():
    settings = ServiceSettings.from_env({})
    assert settings.port == 8080
    assert settings.host == "127.0.0.1"
    assert settings.max_batch == 10_000
    assert settings.model_dir == Path("artifacts")


def test_values_are_read_and_typed():
    env = {"MODEL_DIR": "/m", "PORT": "9000", "WORKERS": "3", "MAX_BATCH": "5", "LOG_LEVEL": "debug"}
    settings = ServiceSettings.from_env(env)
    assert (settings.model_dir, settings.port, settings.workers, settings.max_batch) == (
        Path("/m"),
        9000,
        3,
        5,
    )
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PORT", "http"),
        ("PORT", "0"),
        ("PORT", "70000"),
        ("WORKERS", "-1"),
        ("MAX_BATCH", "0"),
        ("LOG_LEVEL", "LOUD"),
        ("EMF", "maybe"),
    ],
)
def test_a_bad_value_names_its_variable(key, value):
    with pytest.raises(ConfigError, match=key):
        ServiceSettings.from_env({key: value})


def test_the_revision_comes_from_git_revision_and_is_unknown_without_it():
    # the image sets GIT_REVISION (Dockerfile); /ready reports it as the build's `revision`
    assert ServiceSettings.from_env({"GIT_REVISION": " 0123abc "}).revision == "0123abc"
    assert ServiceSettings.from_env({}).revision == "unknown"
    assert ServiceSettings.from_env({"GIT_REVISION": ""}).revision == "unknown"


def test_emf_lines_are_off_unless_the_environment_turns_them_on():
    # only CloudWatch reads them: the boot script on AWS sets EMF=1 (infra/user_data.sh)
    assert ServiceSettings.from_env({}).emf is False
    assert ServiceSettings.from_env({"EMF": ""}).emf is False
    assert ServiceSettings.from_env({"EMF": "0"}).emf is False
    assert ServiceSettings.from_env({"EMF": "1"}).emf is True
    assert ServiceSettings.from_env({"EMF": " True "}).emf is True


def _make_run_commands(cwd: Path, model_dir: Path) -> str:
    """What `make run` would run from cwd (make -n: printed, not run), its model already trained."""
    stamp = ROOT / ".venv" / ".train-installed"
    done = subprocess.run(
        ["make", "-n", "-f", str(ROOT / "Makefile"), "-o", str(stamp), "run", f"VENV={ROOT / '.venv'}",
         f"MODEL_DIR={model_dir}"],
        cwd=cwd, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return done.stdout


def test_make_run_hands_the_server_the_checkouts_revision_and_unknown_outside_git(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "metadata.json").write_text("{}")  # `make run` trains only without one
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert f'GIT_REVISION="${{GIT_REVISION:-{head}}}"' in _make_run_commands(ROOT, tmp_path / "model")
    outside = tmp_path / "not-a-checkout"
    outside.mkdir()
    probe = subprocess.run(["git", "rev-parse", "HEAD"], cwd=outside, capture_output=True, check=False)
    if probe.returncode == 0:
        pytest.fail(f"{outside} lies inside a git checkout; the test needs a folder outside one")
    assert 'GIT_REVISION="${GIT_REVISION:-unknown}"' in _make_run_commands(outside, tmp_path / "model")
