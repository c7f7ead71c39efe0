"""Telemetry facts the service and the Pulumi program share, and the CloudWatch EMF lines built from them.

With EMF=1 (service/config.py; the AWS boot script sets it, a local run leaves it off), the service
prints CloudWatch Embedded Metric Format (EMF) lines to stdout once a minute per worker; the
container's awslogs driver ships stdout to CloudWatch Logs, which turns each line into metric data
points (no agent, no PutMetricData permission). infra/monitoring.py imports the namespace,
metric names, dimension and thresholds from here for its alarms and dashboard, so the two can never
disagree.

EMF specification (the JSON shape validated in tests/test_telemetry.py):
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

Standard library only, and nothing runs at import time: the Pulumi program imports this module.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

NAMESPACE = "CaliHousing"
# Service-wide metrics: no dimension (one stack per account and region), so each costs one custom metric.
# An empty DimensionSet is valid EMF (open-telemetry/opentelemetry-collector-contrib#13766, citing the spec).
REQUESTS = "Requests"  # Count: requests answered in the interval, every route
ERRORS_5XX = "Errors5xx"  # Count: of those, answered with a 5xx
LATENCY_P99 = "LatencyP99"  # Milliseconds: the interval's 99th percentile (upper bucket bound)
DRIFT_PSI_MAX = "DriftPSIMax"  # None: the largest PSI over the 8 features (the drift alarm's metric)
# Per column: one series per feature and one for the prediction, under the Feature dimension.
DRIFT_PSI = "DriftPSI"
FEATURE_DIMENSION = "Feature"

INTERVAL_S = 60  # EMF lines once a minute per worker (the alarms' periods are multiples of this)

# Population stability index thresholds, the usual ones: stable < 0.1 <= warning < 0.2 <= drift.
PSI_WARNING = 0.1
PSI_DRIFT = 0.2
# A bin with no recent records would make PSI infinite; its share is floored at this instead.
PSI_FLOOR = 1e-4
# Below this many records in the window, PSI measures the sample, not the traffic: two records give
# PSI ~8.3 on every column. Test-split rows drawn n at a time (bench/drift_noise.py, 300 draws): the
# largest of the 8 features' PSI has a 99th percentile of 0.31 at n=100, 0.15 at 200, 0.06 at 500, so
# from 500 on ordinary traffic reads "stable". Below it every column reads NOT_ENOUGH_DATA and no PSI
# is emitted, and the drift alarm treats the missing metric as not breaching (infra/monitoring.py).
DRIFT_MIN_RECORDS = 500
STABLE, WARNING, DRIFT, NOT_ENOUGH_DATA = "stable", "warning", "drift", "not enough data"
STATUSES = (STABLE, WARNING, DRIFT, NOT_ENOUGH_DATA)


def psi_status(psi: float | None) -> str:
    """The status of a PSI value; None (fewer than DRIFT_MIN_RECORDS records) is "not enough data"."""
    if psi is None:
        return NOT_ENOUGH_DATA
    if psi >= PSI_DRIFT:
        return DRIFT
    return WARNING if psi >= PSI_WARNING else STABLE


@dataclass(frozen=True)
class Snapshot:
    """One interval's figures for one worker.

    Attributes:
        requests: Requests answered in the interval.
        errors_5xx: Of those, how many were answered with a 5xx.
        latency_p99_ms: 99th percentile latency in the interval; None without requests.
        psi: PSI of each feature and of the prediction over the drift window; None while the window
            holds fewer than DRIFT_MIN_RECORDS records (then no DriftPSI or DriftPSIMax is emitted).
        features: Which keys of `psi` are input features (DriftPSIMax covers those only).
    """

    requests: int
    errors_5xx: int
    latency_p99_ms: float | None
    psi: Mapping[str, float | None]
    features: tuple[str, ...]


def _envelope(timestamp_ms: int, dimensions: list[list[str]], metrics: list[dict[str, str]]) -> dict:
    return {
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": NAMESPACE, "Dimensions": dimensions, "Metrics": metrics}],
        }
    }


def emf_lines(snapshot: Snapshot, timestamp_ms: int) -> list[str]:
    """The EMF log lines (one JSON object each) for one interval.

    One line for the service-wide metrics, then one per column with a PSI (EMF takes a single value
    per dimension key per line, so each Feature value needs its own line). Values that do not exist
    (no requests, too few records for a PSI) are left out rather than sent as zeros.
    """
    service = _envelope(
        timestamp_ms,
        [[]],
        [{"Name": REQUESTS, "Unit": "Count"}, {"Name": ERRORS_5XX, "Unit": "Count"}],
    )
    service |= {REQUESTS: snapshot.requests, ERRORS_5XX: snapshot.errors_5xx}
    optional = {
        LATENCY_P99: ("Milliseconds", snapshot.latency_p99_ms),
        DRIFT_PSI_MAX: ("None", _max_psi(snapshot)),
    }
    for name, (unit, value) in optional.items():
        if value is not None:
            service["_aws"]["CloudWatchMetrics"][0]["Metrics"].append({"Name": name, "Unit": unit})
            service[name] = round(value, 6)
    lines = [json.dumps(service, separators=(",", ":"))]
    for column, psi in snapshot.psi.items():
        if psi is None:
            continue
        line = _envelope(timestamp_ms, [[FEATURE_DIMENSION]], [{"Name": DRIFT_PSI, "Unit": "None"}])
        line |= {FEATURE_DIMENSION: column, DRIFT_PSI: round(psi, 6)}
        lines.append(json.dumps(line, separators=(",", ":")))
    return lines


def _max_psi(snapshot: Snapshot) -> float | None:
    values = [v for k, v in snapshot.psi.items() if k in snapshot.features and v is not None]
    return max(values) if values else None


def p99_from_buckets(bounds: list[float], counts: list[float]) -> float | None:
    """The upper bound of the bucket holding the 99th percentile (non-cumulative counts per bucket).

    Returns None without observations; the last bucket's bound may be +Inf, reported as the largest
    finite bound (the alarm's threshold lies far below it).
    """
    total = sum(counts)
    if total <= 0:
        return None
    rank, seen = 0.99 * total, 0.0
    finite = [b for b in bounds if math.isfinite(b)]
    for bound, count in zip(bounds, counts, strict=True):
        seen += count
        if seen >= rank:
            return bound if math.isfinite(bound) else (finite[-1] if finite else None)
    return finite[-1] if finite else None


class Emitter:
    """A daemon thread (a greenlet under gevent's patched threading) printing EMF lines each interval."""

    def __init__(
        self,
        snapshot: Callable[[], Snapshot],
        interval_s: float = INTERVAL_S,
        stream: IO[str] | None = None,
    ) -> None:
        self._snapshot = snapshot
        self._interval_s = interval_s
        self._stream = stream
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start emitting (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="emf-emitter", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the current interval's line, if any."""
        self._stop.set()

    def emit_once(self) -> list[str]:
        """Take one snapshot and print its lines; returns them."""
        lines = emf_lines(self._snapshot(), int(time.time() * 1000))
        stream = self._stream or sys.stdout
        # one write, so lines from two workers sharing the container's stdout never interleave mid-line
        stream.write("".join(line + "\n" for line in lines))
        stream.flush()
        return lines

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.emit_once()
            except (OSError, ValueError) as exc:  # a closed stdout must not kill the worker
                print(f"service: EMF emit failed: {exc}", file=sys.stderr)
