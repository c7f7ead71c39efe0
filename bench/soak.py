"""Soak: the container under sustained mixed load, minute by minute, into bench/results.json.

    python -m bench.soak [--minutes 5] [--segment 60] [--connections 32] [--image cali-housing:latest]
    (or: make soak, which builds the image first)

Runs the image on a loopback port and loads it with wrk (Debian's package) at a fixed concurrency,
one wrk run per segment back to back, with a mix of single records and batches of 20 (four singles
to one batch). After a short warm-up and after every segment it reads each gunicorn worker's RSS
inside the container. It writes the "soak" key of bench/results.json and exits 1 when a goal is
missed: any error (socket error, timeout or non-2xx), the last segment's p99 above 1.5x the first's,
or worker RSS grown more than 5% from after the warm-up to the end. Not a test: it takes minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from datetime import UTC, datetime

import requests

from bench import wrk
from bench.results import update_results
from model.schema import example_record
from testkit.docker import docker
from testkit.ports import free_port

P99_RATIO_MAX = 1.5
RSS_GROWTH_MAX = 0.05
BATCH = 20

# Every worker's RSS, read inside the container: gunicorn's arbiter is PID 1, its workers' parent.
RSS_PROBE = """
import json, os
out = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        status = open(f"/proc/{pid}/status").read()
    except OSError:
        continue
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    if fields.get("PPid", "").strip() == "1" and "VmRSS" in fields:
        out[pid] = int(fields["VmRSS"].split()[0])
print(json.dumps(out))
"""

WRK_SCRIPT = """
local single = {single}
local batch = {batch}
local n = 0
request = function()
  n = n + 1
  local body = single
  if n % 5 == 0 then body = batch end
  return wrk.format("POST", "/predict", {{["Content-Type"] = "application/json"}}, body)
end
"""


def run_wrk(url: str, script: str, connections: int, seconds: int) -> dict[str, float]:
    """One wrk run; returns requests, rps, p50_ms, p99_ms and errors (socket errors + non-2xx)."""
    figures = wrk.run(url, script, connections, seconds, threads=2)
    return {key: figures[key] for key in ("requests", "rps", "p50_ms", "p99_ms", "errors")}


def worker_rss_kb(container: str) -> dict[str, int]:
    """RSS in kB of each gunicorn worker in the container, by pid."""
    return json.loads(docker("exec", container, "python", "-c", RSS_PROBE).stdout)


def wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"soak: {url}/ready did not answer 200 within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=5, help="segments to run (default 5)")
    parser.add_argument("--segment", type=int, default=60, help="seconds per segment (default 60)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--image", default=os.environ.get("SOAK_IMAGE", "cali-housing:latest"))
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave results.json alone")
    args = parser.parse_args(argv)

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    name = f"cali-soak-{uuid.uuid4().hex[:8]}"
    docker("run", "--detach", "--name", name, "--label", "cali-housing-soak",
           "--publish", f"127.0.0.1:{port}:8080", "--env", "LOG_LEVEL=WARNING", args.image)  # fmt: skip
    single = json.dumps(example_record())
    batch = json.dumps({"instances": [example_record()] * BATCH})
    script = WRK_SCRIPT.format(single=json.dumps(single), batch=json.dumps(batch))
    try:
        wait_ready(url)
        version = requests.get(f"{url}/ready", timeout=5).json()["model_version"]
        run_wrk(url, script, args.connections, 10)  # warm-up: caches, allocator, lazy imports
        rss_start = worker_rss_kb(name)
        segments = []
        for minute in range(1, args.minutes + 1):
            figures = run_wrk(url, script, args.connections, args.segment)
            figures["worker_rss_kb"] = worker_rss_kb(name)
            segments.append({"segment": minute, **figures})
            print(f"soak: segment {minute}/{args.minutes}: {json.dumps(figures)}", flush=True)
        rss_end = segments[-1]["worker_rss_kb"]
        restarts = docker("inspect", "--format", "{{.RestartCount}}", name).stdout.strip()
    finally:
        docker("rm", "--force", name, check=False)

    errors = sum(s["errors"] for s in segments)
    p99_ratio = segments[-1]["p99_ms"] / segments[0]["p99_ms"]
    same_workers = set(rss_start) == set(rss_end)
    growth = sum(rss_end.values()) / sum(rss_start.values()) - 1
    worst = max((rss_end[p] / rss_start[p] - 1 for p in rss_start if p in rss_end), default=growth)
    goals = {
        "zero_errors": errors == 0,
        "p99_last_within_1_5x_first": p99_ratio <= P99_RATIO_MAX,
        "worker_rss_growth_within_5pct": same_workers and max(growth, worst) <= RSS_GROWTH_MAX,
    }
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2)},
        "image": args.image,
        "model_version": version,
        "duration_s": args.minutes * args.segment,
        "segment_s": args.segment,
        "connections": args.connections,
        "mix": f"4 single records : 1 batch of {BATCH}, POST /predict, keep-alive",
        "requests": sum(s["requests"] for s in segments),
        "errors": errors,
        "p99_first_ms": segments[0]["p99_ms"],
        "p99_last_ms": segments[-1]["p99_ms"],
        "p99_ratio_last_to_first": round(p99_ratio, 3),
        "worker_rss_kb_after_warmup": rss_start,
        "worker_rss_kb_at_end": rss_end,
        "worker_rss_growth_pct": round(100 * growth, 2),
        "worst_worker_rss_growth_pct": round(100 * worst, 2),
        "workers_replaced": not same_workers,
        "container_restarts": int(restarts or 0),
        "segments": segments,
        "goals": goals,
        "notes": "wrk -t2 on the same two cores as the container, both niced; a machine shared with "
        "other jobs (see load_avg_1m) widens p99.",
    }
    print(json.dumps({k: v for k, v in result.items() if k != "segments"}, indent=2))
    if not args.no_write:
        update_results("soak", result)
        print("soak: wrote the 'soak' key of bench/results.json")
    if not all(goals.values()):
        print(f"soak: missed {[k for k, ok in goals.items() if not ok]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
