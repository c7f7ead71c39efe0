"""The image builds from a clean checkout, and a model that misses the quality gate fails the build."""

from __future__ import annotations

import pytest

from testkit.docker import IMAGE, docker
from tests.docker.conftest import BuiltImage

pytestmark = pytest.mark.docker


def test_image_builds_from_a_clean_checkout_with_the_runtime_settings(image: BuiltImage) -> None:
    config = docker("image", "inspect", "--format", "{{json .Config}}", image.tag).stdout
    assert image.tag == IMAGE
    assert '"User":"10001:10001"' in config
    # exec form: gunicorn is PID 1 and gets docker stop's SIGTERM itself
    cmd = '["gunicorn","--no-control-socket","-c","python:service.gunicorn_conf","service:create_app()"]'
    assert f'"Cmd":{cmd}' in config
    assert '"8080/tcp"' in config
    assert "/health" in config, "the HEALTHCHECK must ask /health"
    assert '"org.opencontainers.image.revision":"test"' in config


def test_a_model_missing_the_quality_gate_fails_the_build(image: BuiltImage) -> None:
    # Only the training stage, with a bound no model can meet: the gate is checked before CV runs.
    done = docker(
        "build",
        "--target",
        "train",
        "--build-arg",
        "MAX_TEST_RMSE=0.001",
        str(image.context),
        timeout=1800,
        check=False,
    )
    assert done.returncode != 0, "the build succeeded although the model misses the quality gate"
    assert "quality gate failed" in done.stderr
