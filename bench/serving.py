"""Serving benchmark: the service against its own /health floor and the seed-like baseline, in one run.

    python -m bench.serving [--duration 6] [--rounds 2] [--model-dir artifacts]     (or: make bench)

Starts the service as shipped (gunicorn + gevent, the project's settings), the same app under granian
(a Rust HTTP server, the contender), and the seed-like baselines (bench/baseline_app.py), each on a
loopback port, and loads them with wrk (bench/wrk.py, niced so it does not preempt the server it
measures). On each of the two servers, GET /health (the floor: routing, hooks, access log, metrics,
JSON) and POST /predict with one record alternate for --rounds rounds at concurrency 16, so the
ratio of the two is taken under the same machine load; then one record at concurrency 1 and batches
of 100. It also times how long a /health waits behind a batch of 10,000 on a one-worker server, and
the server-side time of a batch of 1,000 in process.

It writes the "serving" key of bench/results.json and bench/serving.md, and exits 1 when a target of
TARGETS is missed (2 when wrk is missing). Bounded: about 2 + 0.5 x duration x rounds minutes
(the defaults: about 3 minutes). Everything targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import operator
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import wrk
from bench.results import ROOT, markdown_table, update_results
from model.artifact import verify_artifact
from model.schema import FEATURE_NAMES, example_record
from testkit.live import GUNICORN, LiveServer, serve
from testkit.ports import free_port
from testkit.processes import stop

# The goals of the serving issue, declared once: name -> (what is compared, comparison, bound).
TARGETS: dict[str, tuple[str, str, float]] = {
    "predict_to_health_ratio": ("/predict one record over the same server's /health, req/s, c16", ">=", 0.85),
    "predict_p99_ms": ("/predict one record, p99 at c16, ms", "<=", 10.0),
    "predict_errors": ("errors of the service in every scenario", "==", 0),
    "seed_like_ratio": ("/predict one record, c16, over the seed-like baseline's", ">=", 20.0),
    "batch1000_server_ms": (
        "a batch of 1,000 in process (parse, validate, predict, answer), p50 ms",
        "<=",
        10.0,
    ),
}
_COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
}

CONNECTIONS = 16
# The same app under granian: 2 worker processes (one per core, as gunicorn's), WSGI interface.
GRANIAN = [sys.executable, "-m", "granian", "--interface", "wsgi", "--workers", "2", "--host", "127.0.0.1",
           "--port", "{port}", "--factory", "service:create_app"]  # fmt: skip
BATCH_WAIT_RECORDS = 10_000


def cpu_seconds(root: int) -> float:
    """CPU time (user + system) used so far by process root and every process below it.

    From /proc/<pid>/stat (proc(5): utime and stime, fields 14 and 15, in clock ticks). Unlike
    req/s, CPU time per request hardly depends on what else the machine runs.
    """
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry.name)] = int(fields[1])
        ticks[int(entry.name)] = int(fields[11]) + int(fields[12])
    tree, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent and pid not in tree]
        tree.update(children)
        frontier += children
    return sum(ticks.get(pid, 0) for pid in tree) / os.sysconf("SC_CLK_TCK")


def timed(pid: int, url: str, script: str, connections: int, seconds: int) -> dict[str, Any]:
    """One wrk run, with the server's CPU time per request beside wrk's figures."""
    before = cpu_seconds(pid)
    figures = wrk.run(url, script, connections, seconds)
    used = cpu_seconds(pid) - before
    figures["server_cpu_us_per_request"] = round(used / max(figures["requests"], 1) * 1e6, 1)
    return figures


@contextlib.contextmanager
def service(command: list[str], model_dir: Path, env: dict[str, str] | None = None) -> Iterator[LiveServer]:
    """The app under command with a fresh metrics folder."""
    with (
        tempfile.TemporaryDirectory(prefix="cali-bench-metrics-") as metrics,
        serve(
            # logs as in production (INFO: one access line per request), into the server's log file
            command,
            model_dir,
            {"WORKERS": "2", "PROMETHEUS_MULTIPROC_DIR": metrics, **(env or {})},
        ) as server,
    ):
        yield server


@contextlib.contextmanager
def baseline(which: str, model_dir: Path) -> Iterator[str]:
    """A seed-like server (bench/baseline_app.py) on a free loopback port; yields its base URL."""
    port = free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.baseline_app", which, str(model_dir), str(port)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            try:
                _wait_post(url, proc)
            except RuntimeError as exc:
                log.seek(0)
                raise RuntimeError(f"{exc}; its log:\n{log.read()[-2000:]}") from None
            yield url
        finally:
            stop(proc, grace_s=20)


def _post(url: str, body: bytes, timeout: float = 30) -> bytes:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return response.read()


def _wait_post(url: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 90
    data = json.dumps(example_record()).encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the baseline server exited")
        with contextlib.suppress(OSError):
            _post(f"{url}/predict", data, timeout=2)
            return
        time.sleep(0.2)
    raise RuntimeError("the baseline server did not answer within 90 s")


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row for several rounds of a scenario: medians, errors summed, the rounds kept."""
    keys = [k for k in ("rps", "p50_ms", "p90_ms", "p99_ms", "server_cpu_us_per_request") if k in runs[0]]
    merged = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    merged["requests"] = sum(r["requests"] for r in runs)
    merged["errors"] = sum(r["errors"] for r in runs)
    merged["rounds"] = [{k: r[k] for k in (*keys, "errors")} for r in runs]
    return merged


def measure_server(server: LiveServer, duration: int, rounds: int) -> dict[str, dict[str, Any]]:
    """The scenarios of one server; /health and /predict alternate so both see the same load."""
    url, pid = server.url, server.proc.pid
    single = wrk.post_script(json.dumps(example_record()))
    batch100 = wrk.post_script(json.dumps({"instances": [example_record()] * 100}))
    wrk.run(f"{url}/predict", single, 4, 2)  # warm-up, not recorded
    wrk.run(f"{url}/health", "", 4, 1)
    health, predict = [], []
    for _ in range(rounds):
        health.append(timed(pid, f"{url}/health", "", CONNECTIONS, duration))
        predict.append(timed(pid, f"{url}/predict", single, CONNECTIONS, duration))
    ratios = [p["rps"] / h["rps"] for h, p in zip(health, predict, strict=True)]
    # the same ratio from CPU time: health's CPU per request over predict's (robust to machine load)
    cpu_ratios = [
        h["server_cpu_us_per_request"] / max(p["server_cpu_us_per_request"], 1e-9)
        for h, p in zip(health, predict, strict=True)
    ]
    return {
        "health_c16": _median_run(health),
        "predict_c16": {
            **_median_run(predict),
            "ratio_to_health": round(statistics.median(ratios), 3),
            "cpu_ratio_to_health": round(statistics.median(cpu_ratios), 3),
        },
        "predict_c1": _median_run([timed(pid, f"{url}/predict", single, 1, duration)]),
        "batch100_c16": _median_run([timed(pid, f"{url}/predict", batch100, CONNECTIONS, duration)]),
    }


def wait_behind_batch(model_dir: Path, batches: int = 3) -> dict[str, Any]:
    """How long GET /health waits while a batch of 10,000 is computed by the same (only) worker."""
    body = json.dumps({"instances": [example_record()] * BATCH_WAIT_RECORDS}).encode()
    worst: list[float] = []
    batch_ms: list[float] = []
    with service(GUNICORN, model_dir, {"WORKERS": "1", "MAX_BATCH": str(BATCH_WAIT_RECORDS)}) as server:
        url = server.url
        _post(f"{url}/predict", body)  # warm-up
        for _ in range(batches):
            done = threading.Event()
            waits: list[float] = []

            def probe(waits: list[float] = waits, done: threading.Event = done) -> None:
                while not done.is_set():
                    started = time.perf_counter()
                    with urllib.request.urlopen(f"{url}/health", timeout=30):
                        pass
                    waits.append(time.perf_counter() - started)

            prober = threading.Thread(target=probe)
            started = time.perf_counter()
            prober.start()
            _post(f"{url}/predict", body)
            batch_ms.append((time.perf_counter() - started) * 1000)
            done.set()
            prober.join()
            worst.append(max(waits) * 1000)
    return {
        "records": BATCH_WAIT_RECORDS,
        "health_worst_wait_ms": [round(w, 1) for w in worst],
        "health_worst_wait_ms_median": round(statistics.median(worst), 1),
        "batch_request_ms_median": round(statistics.median(batch_ms), 1),
    }


def in_process(model_dir: Path, repeats: int = 2000) -> dict[str, float]:
    """One-row and 1,000-row predict through the service's model, and a whole 1,000-record request."""
    from service import create_app
    from service.config import ServiceSettings
    from service.predictor import LoadedModel

    predictor = LoadedModel.load(model_dir)
    row = np.array([[example_record()[n] for n in FEATURE_NAMES]])
    batch = np.repeat(row, 1000, axis=0)

    def p50(call: Callable[[], object], n: int, clock: Callable[[], float] = time.perf_counter) -> float:
        call()
        times = []
        for _ in range(n):
            started = clock()
            call()
            times.append(clock() - started)
        return statistics.median(times)

    client = create_app({"SETTINGS": ServiceSettings(model_dir=model_dir, log_level="WARNING")}).test_client()
    body = json.dumps({"instances": [example_record()] * 1000})

    def request() -> object:
        return client.post("/predict", data=body, content_type="application/json")

    return {
        "one_row_p50_us": round(p50(lambda: predictor.predict(row), repeats) * 1e6, 1),
        "batch1000_predict_p50_ms": round(p50(lambda: predictor.predict(batch), 30) * 1e3, 2),
        # the whole server-side path: parse, validate, predict, answer (Flask's test client, no socket)
        "batch1000_request_p50_ms": round(p50(request, 30) * 1e3, 2),
        # the same in CPU time of this thread: what the request costs, whatever else the machine runs
        "batch1000_request_cpu_p50_ms": round(p50(request, 30, time.thread_time) * 1e3, 2),
    }


def check_targets(figures: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value and whether it is met."""
    verdicts = {}
    for name, (what, op, bound) in TARGETS.items():
        value = figures[name]
        verdicts[name] = {"what": what, "target": f"{op} {bound:g}", "value": value,
                          "met": bool(_COMPARE[op](value, bound))}  # fmt: skip
    return verdicts


def main(argv: list[str] | None = None) -> int:
    """Run every scenario, write the results, and exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--duration", type=int, default=6, help="seconds per wrk run (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="/health, /predict rounds (default 2)")
    parser.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_DIR", "artifacts")))
    parser.add_argument("--no-write", action="store_true", help="print the figures, leave the files alone")
    args = parser.parse_args(argv)
    if not wrk.available():
        print("bench.serving: wrk not found; install it (apt-get install wrk)", file=sys.stderr)
        return 2
    started = time.monotonic()
    load_before = os.getloadavg()[0]
    model_version = verify_artifact(args.model_dir)["model_version"]
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the in-process figures, like a worker

    servers: dict[str, dict[str, dict[str, Any]]] = {}
    for name, command in (("gunicorn+gevent", GUNICORN), ("granian", GRANIAN)):
        with service(command, args.model_dir) as server:
            servers[name] = measure_server(server, args.duration, args.rounds)
        print(f"{name}: {json.dumps({k: v['rps'] for k, v in servers[name].items()})}", flush=True)
    single = wrk.post_script(json.dumps(example_record()))
    baselines = {}
    for which in ("first", "same"):
        with baseline(which, args.model_dir) as url:
            wrk.run(f"{url}/predict", single, 2, 1)
            baselines[which] = _median_run([wrk.run(f"{url}/predict", single, CONNECTIONS, args.duration)])
    behind = wait_behind_batch(args.model_dir)
    inproc = in_process(args.model_dir)

    shipped = servers["gunicorn+gevent"]
    figures = {
        "predict_to_health_ratio": shipped["predict_c16"]["ratio_to_health"],
        "predict_p99_ms": shipped["predict_c16"]["p99_ms"],
        "predict_errors": sum(s["errors"] for s in shipped.values()),
        "seed_like_ratio": round(shipped["predict_c16"]["rps"] / baselines["first"]["rps"], 2),
        "batch1000_server_ms": inproc["batch1000_request_p50_ms"],
    }
    verdicts = check_targets(figures)
    load_after = os.getloadavg()[0]
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_avg_1m_before": round(load_before, 2),
            "load_avg_1m_after": round(load_after, 2),
        },
        "model_version": model_version,
        "duration_s": args.duration,
        "rounds": args.rounds,
        "connections": CONNECTIONS,
        "servers": servers,
        "seed_like_baseline_c16": baselines["first"],
        "same_model_baseline_c16": baselines["same"],
        "wait_behind_batch_10000": behind,
        "in_process": inproc,
        "targets": verdicts,
        "wall_seconds": round(time.monotonic() - started),
        "notes": "wrk -t1 niced on the same cores as the server. Ratios are taken within this run "
        "(/health and /predict alternate on the same server); absolute req/s depend on the machine "
        "and its load (see machine.load_avg_1m_*).",
    }
    text = render(result)
    print(text)
    if not args.no_write:
        update_results("serving", result)
        (ROOT / "bench" / "serving.md").write_text(text)
    missed = [name for name, v in verdicts.items() if not v["met"]]
    for name, v in verdicts.items():
        print(f"target {name}: {v['value']} {v['target']}: {'met' if v['met'] else 'NOT met'}")
    print(f"bench.serving: {result['wall_seconds']} s", file=sys.stderr)
    return 1 if missed else 0


def render(result: dict[str, Any]) -> str:
    """bench/serving.md from the results."""
    rows = []
    for server, scenarios in result["servers"].items():
        for scenario, r in scenarios.items():
            ratio = r.get("ratio_to_health", "")
            cpu_ratio = r.get("cpu_ratio_to_health", "")
            rows.append([server, scenario, f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                         r["errors"], r["server_cpu_us_per_request"], ratio, cpu_ratio])  # fmt: skip
    for name, key in (
        ("seed-like baseline", "seed_like_baseline_c16"),
        ("same-model baseline", "same_model_baseline_c16"),
    ):
        r = result[key]
        rows.append([name, "predict_c16", f"{r['rps']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                     r["errors"], "", "", ""])  # fmt: skip
    header = ["server", "scenario", "req/s", "p50 ms", "p99 ms", "errors", "server CPU µs/req",
              "/predict ÷ /health (req/s)", "(CPU)"]  # fmt: skip
    table = markdown_table(header, rows)
    targets = markdown_table(
        ["target", "what", "bound", "measured", "met"],
        [[n, v["what"], v["target"], v["value"], "yes" if v["met"] else "**no**"]
         for n, v in result["targets"].items()],
    )  # fmt: skip
    m, behind, inproc = result["machine"], result["wait_behind_batch_10000"], result["in_process"]
    return (
        f"# Serving benchmark\n\nModel `{result['model_version']}`, {result['duration_s']} s per wrk run, "
        f"{result['rounds']} alternating rounds of /health and /predict, "
        f"concurrency {result['connections']}, "
        f"wrk niced on the same {m['cpus']} cores; load average {m['load_avg_1m_before']} before, "
        f"{m['load_avg_1m_after']} after. Reproduce: `make bench` ({result['wall_seconds']} s).\n\n"
        "The service ships as gunicorn + gevent; granian serves the same app as the contender. The "
        "seed-like baseline serves this project's first model (tuned HistGradientBoosting) the seed's way "
        "(Flask's development server, a pandas DataFrame per request); the same-model baseline serves "
        "today's model that way.\n\n"
        f"{table}\n{targets}\n"
        f"A /health sent while one worker computes a batch of {behind['records']:,} waits at worst "
        f"{behind['health_worst_wait_ms_median']} ms (median over batches; the batch itself takes "
        f"{behind['batch_request_ms_median']} ms end to end). In process: one row "
        f"{inproc['one_row_p50_us']} µs, 1,000 rows {inproc['batch1000_predict_p50_ms']} ms, a whole "
        f"1,000-record request {inproc['batch1000_request_p50_ms']} ms (p50; "
        f"{inproc['batch1000_request_cpu_p50_ms']} ms of CPU time).\n"
    )


if __name__ == "__main__":
    sys.exit(main())
