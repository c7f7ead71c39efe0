"""A newcomer's first `make run`, timed: seconds from the command to a 200 from /ready.

    python -m bench.first_run                 # the shipped evaluation (docs/report/evaluation.json)
    python -m bench.first_run --cache none    # no saved evaluation: every CV fit runs

It clones this checkout's HEAD into a temporary folder (committed files only, as a fresh clone has
them), points it at this checkout's virtualenv (no install is timed, and none is made: make is told
the install stamp is up to date), runs `make run` there with an empty artifacts folder, waits for
/ready, stops the server and records the figures under `first_run` in bench/results.json: seconds
to ready, the CPU seconds it used (training and server start, all processes), whether the saved
evaluation was reused, the training's own stage lines, the machine's cores and its load before and
after (the run shares the machine with whatever else runs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.results import ROOT, update_results

READY_TIMEOUT_S = 900  # a loaded 2-core machine; the target is 60 s on a quiet one
TARGET_S = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ready(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return json.loads(answer.read()) if answer.status == 200 else None
    except OSError:
        return None


def first_run(
    cache: str, venv: Path, save_evaluation: Path | None = None, keep_metadata: Path | None = None
) -> dict[str, Any]:
    """Clone HEAD, run `make run` from an empty artifacts folder, and time it to /ready.

    Args:
        cache: "shipped" (the committed saved evaluation) or "none" (every CV fit runs).
        venv: The virtualenv make runs (never installed into).
        save_evaluation: Where the training saves its CV figures (how `make report` would), or None.
        keep_metadata: Where to copy the trained metadata.json (to compare figures), or None.
    """
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(clone)], check=True)
        revision = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=clone, capture_output=True, text=True, check=True
        ).stdout.strip()
        port = _free_port()
        flags = [f"VENV={venv}", f"PORT={port}", "MODEL_DIR=artifacts"]
        if cache == "none":
            flags.append("EVALUATION_CACHE=no-saved-evaluation.json")
        if save_evaluation is not None:
            flags.append(f"TRAIN_FLAGS=--save-evaluation {save_evaluation}")
        # -o: the install stamp counts as up to date, so make never reinstalls into the shared venv
        command = ["make", "--no-print-directory", "-o", f"{venv}/.train-installed", "run", *flags]
        log = Path(tmp) / "make.log"
        load_before = os.getloadavg()
        cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        with log.open("w") as out:
            server = subprocess.Popen(
                command, cwd=clone, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                ready = None
                while ready is None:
                    if server.poll() is not None:
                        raise SystemExit(f"make run exited with {server.returncode}:\n{log.read_text()}")
                    if time.monotonic() - started > READY_TIMEOUT_S:
                        raise SystemExit(f"not ready after {READY_TIMEOUT_S} s:\n{log.read_text()}")
                    time.sleep(0.25)
                    ready = _ready(f"http://127.0.0.1:{port}/ready")
                seconds = time.monotonic() - started
                load_after = os.getloadavg()
            finally:
                os.killpg(server.pid, signal.SIGTERM)  # make, gunicorn and its workers: our own group
                server.wait(timeout=60)
        # make's children (the training, gunicorn) are counted once make is waited for: CPU time is
        # what a quiet machine would need, spread over its cores
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = cpu.ru_utime + cpu.ru_stime - cpu_before.ru_utime - cpu_before.ru_stime
        meta_text = (clone / "artifacts" / "metadata.json").read_text()
        if keep_metadata is not None:
            keep_metadata.write_text(meta_text)
        meta = json.loads(meta_text)
        lines = log.read_text().splitlines()
    fingerprint = (meta.get("evaluation") or {}).get("fingerprint") or {}
    return {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": f"python -m bench.first_run --cache {cache}",
        "cache": cache,
        "seconds_to_ready": round(seconds, 1),
        "target_seconds": TARGET_S,
        "cpu_seconds": round(cpu_seconds, 1),
        "evaluation_figures_from": fingerprint.get("figures_from"),
        "fingerprint": fingerprint.get("sha256"),
        "ready": ready,
        "revision": revision,
        "model_version": meta["model_version"],
        "machine": {
            "cpus": os.cpu_count(),
            "os": platform.system(),
            "load_avg_1m_before": round(load_before[0], 2),
            "load_avg_1m_after": round(load_after[0], 2),
        },
        "training_lines": [line for line in lines if line.startswith("[")],
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and record it; exit 1 when ready took longer than the target."""
    parser = argparse.ArgumentParser(prog="python -m bench.first_run", description=__doc__)
    parser.add_argument("--cache", choices=("shipped", "none"), default="shipped")
    parser.add_argument(
        "--venv", type=Path, default=Path(sys.prefix), help="virtualenv to run (default: this one)"
    )
    parser.add_argument(
        "--save-evaluation", type=Path, metavar="FILE", help="keep the run's CV figures in FILE"
    )
    parser.add_argument(
        "--keep-metadata", type=Path, metavar="FILE", help="copy the run's metadata.json to FILE"
    )
    args = parser.parse_args(argv)
    save = None if args.save_evaluation is None else args.save_evaluation.absolute()
    keep = None if args.keep_metadata is None else args.keep_metadata.absolute()
    result = first_run(args.cache, args.venv.absolute(), save, keep)
    key = "first_run" if args.cache == "shipped" else "first_run_without_saved_evaluation"
    update_results(key, result)
    print(json.dumps({k: v for k, v in result.items() if k != "training_lines"}, indent=2))
    return 0 if result["seconds_to_ready"] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
