"""The real service on a loopback port, for tests and benchmarks that speak HTTP."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from testkit.ports import free_port
from testkit.processes import stop, wait_for

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf", "service:create_app()"]


@dataclass
class LiveServer:
    """A running server: its base URL and process."""

    url: str
    proc: subprocess.Popen
    port: int
    log: Path


@contextlib.contextmanager
def serve(
    command: Sequence[str], model_dir: Path, env: Mapping[str, str] | None = None, ready_s: float = 120
) -> Iterator[LiveServer]:
    """Run command (a server reading MODEL_DIR, HOST and PORT) on a free loopback port until /ready.

    "{port}" in an argument of command is replaced by that port, for a server that takes it on its
    command line. The server is stopped (SIGTERM, then SIGKILL) afterwards, and its log removed.
    """
    port = free_port()
    inherited = dict(os.environ)
    # a folder named by the caller's environment would be shared with this server; `env` may name one
    inherited.pop("PROMETHEUS_MULTIPROC_DIR", None)
    full_env = {
        **inherited,
        "MODEL_DIR": str(model_dir),
        "HOST": "127.0.0.1",
        "PORT": str(port),
        **(env or {}),
    }
    # The server's log goes to a file: a pipe nobody reads fills up and blocks the server.
    log = Path(tempfile.mkstemp(prefix="cali-server-", suffix=".log")[1])
    with log.open("w") as sink:
        argv = [arg.replace("{port}", str(port)) for arg in command]
        proc = subprocess.Popen(argv, cwd=ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT)
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


def gunicorn(
    model_dir: Path, env: Mapping[str, str] | None = None, ready_s: float = 120
) -> contextlib.AbstractContextManager[LiveServer]:
    """The real service under gunicorn (the project's settings) on a free loopback port."""
    return serve(GUNICORN, model_dir, env, ready_s)
