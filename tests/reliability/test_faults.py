"""Faults in the server process: a worker killed under load, slow clients, a bad artifact.

Each runs the real service under gunicorn on a loopback port (testkit/live.py). The deadlines here are
behavioural and generous (a request must be answered before one), never throughput figures.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from model.artifact import METADATA_FILE
from model.schema import example_record
from testkit.live import GUNICORN, ROOT, gunicorn
from testkit.ports import free_port
from tests.reliability.load import Load

pytestmark = pytest.mark.slow


def workers_of(arbiter: int) -> set[int]:
    """The pids whose parent is the gunicorn arbiter."""
    children = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # the command name in parentheses may hold spaces; the parent pid is the 2nd field after it
        if int(stat.rsplit(")", 1)[1].split()[1]) == arbiter:
            children.add(int(entry.name))
    return children


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        time.sleep(0.1)


def test_a_worker_killed_under_load_loses_only_its_in_flight_requests(trained_model_dir):
    with gunicorn(trained_model_dir, {"WORKERS": "2", "LOG_LEVEL": "WARNING"}) as server:
        wait_until(lambda: len(workers_of(server.proc.pid)) == 2, 60, "two workers")
        before = workers_of(server.proc.pid)
        victim = min(before)
        with Load(server.url, clients=6, max_seconds=120) as load:
            load.wait_for(60)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            # the arbiter notices the death and boots a replacement
            wait_until(
                lambda: victim not in workers_of(server.proc.pid) and len(workers_of(server.proc.pid)) == 2,
                60,
                "the killed worker replaced",
            )
            load.wait_for(len(load.outcomes) + 120)
        after = workers_of(server.proc.pid)
        assert server.proc.poll() is None, "the arbiter died with its worker"

    outcomes = load.outcomes
    failed = [o for o in outcomes if o.status != 200]
    # A failure is a request the dead worker held (no HTTP answer at all), never an error status.
    assert all(o.status is None for o in failed), failed
    assert all(o.in_flight_at(killed_at) for o in failed), failed
    assert len(failed) <= load.clients, failed
    assert after - before, "no new worker was booted"
    later = [o for o in outcomes if o.started > killed_at]
    assert later, "no request after the kill"
    assert all(o.status == 200 for o in later)
    ready = [o for o in later if o.path == "/ready"]
    assert ready, "/ready was not probed after the kill"
    assert all(o.status == 200 for o in ready)


SLOW_CLIENTS = 50
HEAD = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 99\r\n"


def test_fifty_slow_or_idle_clients_do_not_delay_a_normal_request(trained_model_dir):
    with gunicorn(trained_model_dir, {"WORKERS": "2", "LOG_LEVEL": "WARNING"}) as server:
        stop = threading.Event()
        address = ("127.0.0.1", server.port)
        sockets = [socket.create_connection(address, timeout=5) for _ in range(SLOW_CLIENTS)]

        def dribble(sock: socket.socket) -> None:
            # headers one byte every 0.2 s, never finished while the test runs
            for i in range(600):
                if stop.wait(0.2):
                    return
                try:
                    sock.sendall(HEAD[i % len(HEAD) : i % len(HEAD) + 1])
                except OSError:
                    return

        # half send their headers byte by byte, half connect and send nothing
        dribblers = [threading.Thread(target=dribble, args=(s,), daemon=True) for s in sockets[::2]]
        for thread in dribblers:
            thread.start()
        try:
            time.sleep(2)  # every slow connection has been accepted and is being held
            for _ in range(5):
                # must be answered within 1 s (a generous deadline for a ~20 ms request)
                answer = requests.post(f"{server.url}/predict", json=example_record(), timeout=1.0)
                assert answer.status_code == 200
                time.sleep(0.5)
        finally:
            stop.set()
            for thread in dribblers:
                thread.join(timeout=5)
            for sock in sockets:
                sock.close()


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file() and p.name != METADATA_FILE), key=os.path.getsize)


def _flip_bytes(folder: Path) -> None:
    target = _largest_file(folder)
    data = bytearray(target.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    target.write_bytes(bytes(data))


def _truncate(folder: Path) -> None:
    target = _largest_file(folder)
    target.write_bytes(target.read_bytes()[: os.path.getsize(target) // 2])


def _another_schema(folder: Path) -> None:
    path = folder / METADATA_FILE
    metadata = json.loads(path.read_text())
    metadata["schema_fingerprint"] = "0" * 16  # written for another feature list
    path.write_text(json.dumps(metadata))


def _metadata_garbled(folder: Path) -> None:
    path = folder / METADATA_FILE
    path.write_bytes(path.read_bytes()[:40])


def _metadata_missing(folder: Path) -> None:
    (folder / METADATA_FILE).unlink()


@pytest.mark.parametrize(
    "damage",
    [_flip_bytes, _truncate, _another_schema, _metadata_garbled, _metadata_missing],
    ids=["corrupt", "truncated", "another-schema", "metadata-garbled", "metadata-missing"],
)
def test_a_bad_artifact_stops_the_server_with_one_line(trained_model_dir, tmp_path, damage):
    artifact = shutil.copytree(trained_model_dir, tmp_path / "artifact")
    damage(artifact)
    env = {**os.environ, "MODEL_DIR": str(artifact), "HOST": "127.0.0.1", "PORT": str(free_port())}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    done = subprocess.run(GUNICORN, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    output = (done.stdout + done.stderr).strip().splitlines()
    assert done.returncode != 0
    # refused before gunicorn's arbiter logs anything: it never listened, so it served nothing
    assert len(output) == 1, output
    assert output[0].startswith("service: cannot start: "), output
