"""The image's figures: size over the base image, build time cold and warm, time from `docker run` to ready.

    python -m bench.docker_figures        (or: make bench-docker)

Builds from a clean copy of the checkout (what git tracks, plus the staged dataset), like the tests,
under a throw-away tag it removes afterwards. Writes the "docker" key of bench/results.json and
leaves every other key as it was. Needs a Docker engine with BuildKit and the base image.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import RESULTS, update_results
from testkit.docker import BASE_IMAGE, BUILD_TIMEOUT, clean_checkout, docker
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
TAG = "cali-housing:bench"
TARGET_MB_OVER_BASE = 60  # issue 17: the runtime stage adds at most 60 MB to the base image
# titles of the Dockerfile's slow steps, as BuildKit's plain log prints them
INSTALL_STEP = "pip --python /opt/venv/bin/python install"
TRAIN_STEP = "python -m model.train"


def timed_build(context: Path, *extra: str) -> tuple[float, str]:
    """Build the context under TAG; return seconds and BuildKit's plain progress log."""
    started = time.perf_counter()
    done = docker("build", "--progress=plain", "--tag", TAG, *extra, str(context), timeout=BUILD_TIMEOUT)
    return time.perf_counter() - started, done.stderr


def step_cached(log: str, marker: str) -> bool:
    """Whether the BuildKit step whose title contains marker was a cache hit."""
    ids = {line.split()[0] for line in log.splitlines() if marker in line and line.startswith("#")}
    return bool(ids) and all(f"{step} CACHED" in log for step in ids)


def image_size(tag: str) -> int:
    """The image's size in bytes, as `docker images` counts it (all layers, base included)."""
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout.strip())


def seconds_to_ready(tag: str, timeout: float = 120) -> float:
    """Start a container and time `docker run` until /ready answers 200; the container is removed."""
    port = free_port()
    started = time.perf_counter()
    cid = docker("run", "--detach", "--publish", f"127.0.0.1:{port}:8080", tag).stdout.strip()
    try:
        while time.perf_counter() - started < timeout:
            with (
                contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as answer,
            ):
                if answer.status == 200:
                    return time.perf_counter() - started
            time.sleep(0.05)
        raise SystemExit(f"{tag} was not ready within {timeout}s")
    finally:
        docker("rm", "--force", cid, check=False)


@contextlib.contextmanager
def checkout() -> Iterator[Path]:
    """A clean copy of the checkout in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="cali-bench-") as tmp:
        yield clean_checkout(Path(tmp))


def measure(ready_runs: int) -> dict[str, Any]:
    """Every figure, measured in one run: builds (cold, warm, after a code change), sizes, start-up."""
    mb = 1_000_000  # docker's own unit
    with checkout() as context:
        cold, _ = timed_build(context, "--no-cache")
        warm, warm_log = timed_build(context)
        # a code-only change: the dependency layers and the trained model must come from the cache
        with open(context / "service" / "__init__.py", "a") as handle:
            handle.write("# a code change\n")
        code_change, code_log = timed_build(context)
    try:
        size, base = image_size(TAG), image_size(BASE_IMAGE)
        ready = [seconds_to_ready(TAG) for _ in range(ready_runs)]
        meta = json.loads(
            docker("run", "--rm", "--entrypoint", "cat", TAG, "/opt/model/metadata.json").stdout
        )
    finally:
        docker("rmi", TAG, check=False)
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "os": platform.system(),
        },
        "model_version": meta["model_version"],
        "image_mb": round(size / mb, 1),
        "base_image": BASE_IMAGE,
        "base_image_mb": round(base / mb, 1),
        "added_over_base_mb": round((size - base) / mb, 1),
        "added_over_base_target_mb": TARGET_MB_OVER_BASE,
        "build_seconds": {
            "cold": round(cold, 1),
            "warm_no_change": round(warm, 1),
            "warm_after_code_change": round(code_change, 1),
        },
        "cache_hits": {
            "no_change": {
                "dependencies": step_cached(warm_log, INSTALL_STEP),
                "training": step_cached(warm_log, TRAIN_STEP),
            },
            "after_code_change": {
                "dependencies": step_cached(code_log, INSTALL_STEP),
                "training": step_cached(code_log, TRAIN_STEP),
            },
        },
        "run_to_ready_seconds": {
            "median": round(statistics.median(ready), 2),
            "runs": [round(r, 2) for r in ready],
        },
        "notes": (
            "cold = docker build --no-cache: every layer rebuilt, including training in the build; the pip "
            "download cache (a BuildKit cache mount) stays warm, so package downloads are not in it. "
            "Times are wall-clock on a machine shared with other jobs (see load_avg_1m)."
        ),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and record; print the figures."""
    parser = argparse.ArgumentParser(prog="python -m bench.docker_figures", description=__doc__)
    parser.add_argument("--ready-runs", type=int, default=3, help="container starts to time (median)")
    args = parser.parse_args(argv)
    figures = measure(args.ready_runs)
    update_results("docker", figures)
    json.dump(figures, sys.stdout, indent=2)
    print(f"\nwritten to {RESULTS.relative_to(ROOT)} under 'docker'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
