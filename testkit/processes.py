"""Waiting for a server to answer, and stopping it whatever it does."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.request


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
    """SIGTERM, wait up to grace_s, then SIGKILL: every server started ends, however it behaves."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
