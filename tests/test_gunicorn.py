"""The real server: gunicorn on a loopback port, exercised over HTTP."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import pytest

from model.schema import example_record
from tests.live import GUNICORN, ROOT, free_port
from tests.test_artifact import corrupt

pytestmark = pytest.mark.slow


def call(url: str, body: object | None = None, content_type: str = "application/json"):
    """One HTTP request; returns (status, headers, parsed or raw body)."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            status, headers, raw = response.status, response.headers, response.read()
    except urllib.error.HTTPError as err:
        status, headers, raw = err.code, err.headers, err.read()
    if headers.get_content_type() == "application/json":
        return status, headers, json.loads(raw)
    return status, headers, raw.decode()


def test_predict_single_and_batch_over_http(live_server):
    status, _, body = call(f"{live_server.url}/predict", example_record())
    assert status == 200
    assert set(body) == {"prediction", "price_usd", "model_version"}
    status, _, batch = call(f"{live_server.url}/predict", {"instances": [example_record()] * 3})
    assert status == 200
    assert batch["predictions"] == [body["prediction"]] * 3


def test_bad_input_over_http_is_a_json_4xx(live_server):
    status, _, body = call(f"{live_server.url}/predict", {"MedInc": "lots"})
    assert status == 400
    assert "MedInc" in [d["field"] for d in body["error"]["details"]]
    status, _, body = call(f"{live_server.url}/predict", b"{}", content_type="text/plain")
    assert status == 415
    status, _, body = call(f"{live_server.url}/nothing-here")
    assert status == 404
    assert body["error"]["code"] == 404


def test_oversized_body_is_413_before_the_body_is_read(live_server):
    # Announce 50 MB and send none of it: the server must answer from the headers alone,
    # without reading (or buffering) the body a client threatens to send.
    with socket.create_connection(("127.0.0.1", live_server.port), timeout=10) as conn:
        conn.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 52428800\r\n\r\n"
        )
        # http.client reads the status, headers and the whole body, however the segments arrive
        reply = http.client.HTTPResponse(conn)
        reply.begin()
        body = reply.read()
    assert (reply.version, reply.status) == (11, 413)
    assert json.loads(body)["error"]["code"] == 413


def test_metrics_add_up_across_both_workers(live_server):
    def predicted() -> float:
        _, _, text = call(f"{live_server.url}/metrics")
        match = re.search(r"^predictions_total (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    before = predicted()
    for _ in range(40):
        status, _, _ = call(f"{live_server.url}/predict", example_record())
        assert status == 200
    after = predicted()
    # every prediction is counted whichever worker served it or the scrape
    assert after - before == 40
    _, _, text = call(f"{live_server.url}/metrics")
    assert 'http_requests_total{method="POST",route="/predict",status="200"}' in text


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("missing", "metadata.json missing"),
        ("corrupt", "does not match its recorded sha256"),
        # hashes that match, arrays that would send forest.so outside them
        ("unsafe_forest", "unsafe to evaluate: left child"),
    ],
)
def test_server_refuses_to_start_with_one_clear_line(tmp_path, trained_model_dir, damage, reason):
    model_dir = tmp_path / "model"
    if damage == "unsafe_forest":
        shutil.copytree(trained_model_dir, model_dir)
        corrupt(model_dir, "child_out_of_range")
    else:
        model_dir.mkdir()
    if damage == "corrupt":
        for item in trained_model_dir.iterdir():
            if item.is_file():
                (model_dir / item.name).write_bytes(item.read_bytes())
        (model_dir / "forest_nodes.npy").write_bytes(b"not a model")
    env = {"MODEL_DIR": str(model_dir), "PORT": str(free_port()), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        GUNICORN, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("service: cannot start:")
    assert reason in lines[0]
