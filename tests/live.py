"""Real servers on loopback ports, for tests (and benchmarks) that speak HTTP."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", "service:create_app()"]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, deadline_s: float, proc: subprocess.Popen | None = None) -> None:
    """Poll url until it answers 200, the process dies, or the deadline passes.

    Raises:
        RuntimeError: Naming what happened.
    """
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
            if response.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {deadline_s:.0f}s")


def stop(proc: subprocess.Popen, grace_s: float = 30) -> None:
    """SIGTERM, wait up to grace_s, then SIGKILL: every test server ends, however it behaves."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@dataclass
class LiveServer:
    """A running server: its base URL and process."""

    url: str
    proc: subprocess.Popen
    port: int
    log: Path


@contextlib.contextmanager
def gunicorn(
    model_dir: Path, env: Mapping[str, str] | None = None, ready_s: float = 120
) -> Iterator[LiveServer]:
    """The real service under gunicorn on a free loopback port, stopped (SIGTERM) afterwards."""
    port = free_port()
    full_env = {
        **os.environ,
        "MODEL_DIR": str(model_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **(env or {}),
    }
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server.
    log = Path(tempfile.mkstemp(prefix="cali-gunicorn-", suffix=".log")[1])
    with log.open("w") as sink:
        proc = subprocess.Popen(GUNICORN, cwd=ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_for(f"{url}/ready", ready_s, proc)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log:\n{log.read_text()[-3000:]}") from None
        yield LiveServer(url=url, proc=proc, port=port, log=log)
    finally:
        stop(proc)
        log.unlink(missing_ok=True)
