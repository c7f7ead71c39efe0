"""Service settings come from the environment in one place, and bad values name their variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.config import ConfigError, ServiceSettings


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
