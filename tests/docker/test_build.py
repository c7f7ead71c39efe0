"""The image builds from a clean checkout, and a model that misses the quality gate fails the build."""

from __future__ import annotations

import json

import pytest
import requests

from infra.release import MODEL_VERSION_ARG, MODEL_VERSION_LABEL, REVISION_ARG, REVISION_LABEL
from testkit.docker import IMAGE, PREBUILT, docker
from tests.docker.conftest import BuiltImage, Container

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


def labels(tag: str) -> dict[str, str]:
    return json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", tag).stdout)


def test_the_image_tells_the_same_identity_in_its_labels_and_on_ready(
    image: BuiltImage, served: Container
) -> None:
    found = labels(image.tag)
    ready = requests.get(f"{served.url}/ready", timeout=10).json()
    assert found[REVISION_LABEL] == ready["revision"]
    if not PREBUILT:
        assert ready["revision"] == "test", "the session's build passes GIT_REVISION=test"
    # a build told MODEL_VERSION (CI's) labels it; a plain build leaves the label empty, never wrong
    assert found[MODEL_VERSION_LABEL] in ("", ready["model_version"])
    metadata = requests.get(f"{served.url}/metadata", timeout=10).json()
    assert metadata["revision"] == ready["revision"]


def test_a_model_version_label_that_is_not_the_trained_model_fails_the_build(image: BuiltImage) -> None:
    # Every layer but the identity's comes from the session's build cache: only the check reruns.
    done = docker(
        "build",
        "--build-arg",
        f"{REVISION_ARG}=test",
        "--build-arg",
        f"{MODEL_VERSION_ARG}=not-the-trained-model",
        str(image.context),
        timeout=1800,
        check=False,
    )
    assert done.returncode != 0, "a label naming another model was accepted"
    assert "MODEL_VERSION=not-the-trained-model but the trained model is" in done.stderr


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
