"""The real server: gunicorn on a loopback port, exercised over HTTP."""

from __future__ import annotations

import http.client
import json
import re
import shutil
import socket
import subprocess
import threading
import urllib.error
import urllib.request

import pytest

from model.schema import example_record
from testkit.live import GUNICORN, ROOT, gunicorn
from testkit.ports import free_port
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


def test_a_named_metrics_folder_loses_only_the_samples_of_an_earlier_run(trained_model_dir, tmp_path):
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "keep.txt").write_text("not the server's")
    (folder / "notes").mkdir()
    (folder / "counter_1.db").write_bytes(b"stale samples")
    with gunicorn(trained_model_dir, {"PROMETHEUS_MULTIPROC_DIR": str(folder), "WORKERS": "1"}) as server:
        assert call(f"{server.url}/predict", example_record())[0] == 200
        _, _, text = call(f"{server.url}/metrics")
    assert "predictions_total 1.0" in text  # the stale file was not summed in
    assert (folder / "keep.txt").read_text() == "not the server's"
    assert (folder / "notes").is_dir()
    assert not (folder / "counter_1.db").exists()


def test_the_metrics_folder_made_for_a_run_is_removed_when_the_server_stops(trained_model_dir, tmp_path):
    # TMPDIR steers tempfile in the server: its own folder is made under tmp_path
    with gunicorn(trained_model_dir, {"TMPDIR": str(tmp_path), "WORKERS": "1"}) as server:
        assert call(f"{server.url}/predict", example_record())[0] == 200
        made = list(tmp_path.glob("cali-metrics-*"))
        assert len(made) == 1
        assert any(made[0].iterdir())  # the worker's samples are there
    assert not made[0].exists()


def test_a_request_is_answered_while_one_worker_computes_a_batch_of_10000(trained_model_dir):
    """A gevent worker lets its other connections run between slices of a large batch."""
    batch = json.dumps({"instances": [example_record()] * 10_000}).encode()
    with gunicorn(trained_model_dir, {"WORKERS": "1", "MAX_BATCH": "10000"}) as server:
        answered_first: list[str] = []
        with socket.create_connection(("127.0.0.1", server.port), timeout=60) as conn:
            conn.sendall(
                b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + b"X-Request-ID: batch\r\nContent-Length: %d\r\n\r\n" % len(batch)
                + batch
            )
            done = threading.Event()

            def probe() -> None:
                # sent only once the whole batch is on its way: each probe's access line is written
                # before the batch's only if the worker served it while the batch was computing
                n = 0
                while not done.is_set():
                    n += 1
                    headers = {"X-Request-ID": f"probe-{n}"}
                    with urllib.request.urlopen(
                        urllib.request.Request(f"{server.url}/health", headers=headers), timeout=60
                    ):
                        pass

            prober = threading.Thread(target=probe)
            prober.start()
            reply = http.client.HTTPResponse(conn)
            reply.begin()
            reply.read()
            done.set()
            prober.join()
        assert reply.status == 200
        for line in server.log.read_text().splitlines():
            request_id = json.loads(line).get("request_id", "") if line.startswith("{") else ""
            if request_id == "batch":
                break
            if request_id.startswith("probe-"):
                answered_first.append(request_id)
    assert answered_first, "every /health waited for the whole batch"


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
