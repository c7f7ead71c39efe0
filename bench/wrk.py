"""wrk (Debian's package) as a library: one bounded run, its figures read from JSON, never its prose.

A run's Lua script ends with `DONE_HOOK`, wrk's `done(summary, latency, requests)` callback, which
writes the figures as one JSON object to the file named by $WRK_JSON_OUT (wrk's scripting API:
summary.requests, summary.duration and summary.errors.{connect,read,write,status,timeout} counts,
latency:percentile(p) and latency.max in microseconds; wrk's SCRIPTING file and scripts/report.lua).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

DONE_HOOK = """
done = function(summary, latency, requests)
  local e = summary.errors
  local out = assert(io.open(os.getenv("WRK_JSON_OUT"), "w"))
  out:write(string.format(
    '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, '
    .. '"timeouts": %d, "non_2xx_3xx": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d}',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
  out:close()
end
"""


def available() -> bool:
    """Whether wrk is on PATH."""
    return shutil.which("wrk") is not None


def post_script(body: str) -> str:
    """The Lua lines that make every request a JSON POST of body."""
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        # a JSON string literal is a valid Lua string literal for the ASCII bodies used here
        f"wrk.body = {json.dumps(body)}\n"
    )


def run(url: str, script: str, connections: int, seconds: int, threads: int = 1) -> dict[str, Any]:
    """Load url for `seconds` with wrk running `script` (plus the JSON hook); return its figures.

    Returns:
        requests, rps, p50_ms, p90_ms, p99_ms, max_ms and errors (socket errors, timeouts and
        answers other than 2xx/3xx), with the raw counts under "raw".
    """
    work = Path(tempfile.mkdtemp(prefix="cali-wrk-"))
    try:
        lua = work / "run.lua"
        lua.write_text(script + DONE_HOOK)
        out = work / "figures.json"
        subprocess.run(
            # niced: the load generator shares the cores and must not preempt the server it
            # measures (un-niced, p99 at c16 swung between 8 and 25 ms from run to run)
            ["nice", "-n", "10", "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s",
             "--timeout", "5s", "-s", str(lua), url],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
            env={**os.environ, "WRK_JSON_OUT": str(out)},
        )  # fmt: skip
        raw = json.loads(out.read_text())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    errors = sum(raw[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts", "non_2xx_3xx"))
    return {
        "requests": raw["requests"],
        "rps": round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
        "p50_ms": round(raw["p50_us"] / 1000, 3),
        "p90_ms": round(raw["p90_us"] / 1000, 3),
        "p99_ms": round(raw["p99_us"] / 1000, 3),
        "max_ms": round(raw["max_us"] / 1000, 3),
        "errors": errors,
        "raw": raw,
    }
