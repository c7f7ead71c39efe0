"""The container as a client and an operator see it: ready in bounded time, the same numbers as the
in-process model, documented errors, a health check, PORT honoured, a clean drain on docker stop."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Callable

import numpy as np
import pytest
import requests

from model import data
from model.schema import FEATURE_NAMES, TARGET_UNIT_USD, example_record
from service.predictor import LoadedModel
from testkit.docker import GRACEFUL_TIMEOUT, READY_TIMEOUT, docker
from tests.docker.conftest import Container

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def rows() -> list[dict[str, float]]:
    """Twenty real records from the holdout split, as a client would send them."""
    split = data.split(data.load_dataset())
    return [
        {name: float(value) for name, value in zip(FEATURE_NAMES, row, strict=True)}
        for row in split.X_test.head(20).to_numpy()
    ]


def expected(artifact: LoadedModel, records: list[dict[str, float]]) -> np.ndarray:
    """What the model predicts for the records in this process."""
    X = np.array([[record[name] for name in FEATURE_NAMES] for record in records], dtype=np.float64)
    return np.asarray(artifact.predict(X), dtype=np.float64)


def test_ready_answers_with_the_baked_model_version(served: Container, image_artifact: LoadedModel) -> None:
    answer = requests.get(f"{served.url}/ready", timeout=5)
    assert answer.status_code == 200
    assert answer.json()["model_version"] == image_artifact.version
    assert requests.get(f"{served.url}/health", timeout=5).json() == {"status": "ok"}


def test_single_predictions_match_the_in_process_model(
    served: Container, image_artifact: LoadedModel, rows: list[dict[str, float]]
) -> None:
    want = expected(image_artifact, rows[:5])
    for record, value in zip(rows[:5], want, strict=True):
        answer = requests.post(f"{served.url}/predict", json=record, timeout=10)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["prediction"] == pytest.approx(value, rel=1e-12)
        assert body["price_usd"] == pytest.approx(value * TARGET_UNIT_USD, abs=0.01)
        assert body["model_version"] == image_artifact.version


def test_batch_predictions_match_the_in_process_model_in_order(
    served: Container, image_artifact: LoadedModel, rows: list[dict[str, float]]
) -> None:
    answer = requests.post(f"{served.url}/predict", json={"instances": rows}, timeout=10)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["predictions"] == pytest.approx(list(expected(image_artifact, rows)), rel=1e-12)
    assert len(body["prices_usd"]) == len(rows)
    assert body["model_version"] == image_artifact.version


def _without(name: str) -> dict[str, float]:
    record = example_record()
    del record[name]
    return record


JSON = "application/json"


@pytest.mark.parametrize(
    ("body", "content_type", "status", "field"),
    [
        pytest.param(json.dumps(_without("MedInc")), JSON, 400, "MedInc", id="missing-field"),
        pytest.param(
            json.dumps({**example_record(), "HouseAge": "old"}), JSON, 400, "HouseAge", id="not-a-number"
        ),
        pytest.param(
            json.dumps({**example_record(), "Latitude": 60.0}), JSON, 422, "Latitude", id="out-of-range"
        ),
        pytest.param("{not json", JSON, 400, "body", id="malformed-json"),
        pytest.param(
            json.dumps(example_record()), "text/plain", 415, "Content-Type", id="wrong-content-type"
        ),
        # MAX_BATCH=50 in the shared container: the environment reaches the service
        pytest.param(
            json.dumps({"instances": [example_record()] * 51}), JSON, 413, "instances", id="batch-too-big"
        ),
    ],
)
def test_bad_input_gets_the_documented_4xx_naming_the_field(
    served: Container, body: str, content_type: str, status: int, field: str
) -> None:
    answer = requests.post(
        f"{served.url}/predict", data=body, headers={"Content-Type": content_type}, timeout=10
    )
    assert answer.status_code == status, answer.text
    error = answer.json()["error"]
    assert error["code"] == status
    assert field in [detail["field"] for detail in error["details"]]


def test_healthcheck_turns_the_container_healthy(served: Container) -> None:
    # `served` runs with --health-interval=1s; the check itself is the image's HEALTHCHECK command.
    deadline = time.monotonic() + 60
    status = None
    while time.monotonic() < deadline:
        status = served.inspect()["State"]["Health"]["Status"]
        if status == "healthy":
            break
        time.sleep(0.5)
    assert status == "healthy", served.inspect()["State"]["Health"]


def test_port_variable_moves_the_listener(start_container: Callable[..., Container]) -> None:
    container = start_container(env={"PORT": "9000"}, container_port=9000)
    container.wait_ready()
    assert requests.get(f"{container.url}/health", timeout=5).status_code == 200


def test_server_refuses_to_start_without_an_artifact_in_one_line(
    start_container: Callable[..., Container],
) -> None:
    container = start_container(env={"MODEL_DIR": "/nonexistent"})
    docker("wait", container.id, timeout=READY_TIMEOUT)
    state = container.inspect()["State"]
    assert state["ExitCode"] != 0
    lines = container.logs().strip().splitlines()
    assert len(lines) == 1, lines
    assert "cannot start" in lines[0]


def test_docker_stop_drains_an_in_flight_request_and_exits_cleanly(
    start_container: Callable[..., Container],
) -> None:
    container = start_container()
    container.wait_ready()
    body = json.dumps(example_record()).encode()
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", container.port), timeout=GRACEFUL_TIMEOUT + 10) as client:
        # Half a request: a worker now holds it, waiting for the rest of the body.
        client.sendall(head + body[:10])
        time.sleep(1.0)
        # Stop with a kill deadline past the graceful timeout, so only a drain that hangs ends in SIGKILL.
        stopper = subprocess.Popen(
            ["docker", "stop", "--time", str(GRACEFUL_TIMEOUT + 10), container.id],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while "Handling signal: term" not in container.logs():
            assert time.monotonic() < deadline, "gunicorn never logged the SIGTERM"
            time.sleep(0.2)
        client.sendall(body[10:])
        response = b""
        while chunk := client.recv(65536):
            response += chunk
    stopper.wait(timeout=GRACEFUL_TIMEOUT + 30)
    assert response.startswith(b"HTTP/1.1 200"), response[:300]
    assert b'"prediction"' in response
    state = container.inspect()["State"]
    assert state["Running"] is False
    killed = f"exit {state['ExitCode']} (137: killed after the timeout):\n{container.logs()[-3000:]}"
    assert state["ExitCode"] in (0, 143), killed
