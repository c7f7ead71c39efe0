"""Model monitoring in the service: `GET /drift`, the drift page, drift on /metrics, and the EMF emitter.

The logic lives in service/drift.py (the shared window, PSI) and service/telemetry.py (names,
thresholds, EMF lines); this module wires them into Flask and gunicorn.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, current_app, jsonify, render_template
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from werkzeug.exceptions import NotFound

from model.profile import load_profile
from model.schema import BY_NAME, FEATURE_NAMES, TARGET_UNIT_USD
from service.drift import COLUMNS, DriftWindow, bin_labels
from service.telemetry import (
    DRIFT,
    NOT_ENOUGH_DATA,
    PSI_DRIFT,
    PSI_WARNING,
    STABLE,
    WARNING,
    Emitter,
    Snapshot,
    p99_from_buckets,
)

bp = Blueprint("drift", __name__)

# Prometheus names of the drift counts (docs/operations.md shows the PromQL that reads them).
VALUE_HISTOGRAM = "model_input_value"  # histogram per column, buckets = the reference's edges
BIN_COUNTER = "model_input_bin_records"  # _total: records per column and bin (PSI needs single bins)
REFERENCE_GAUGE = "model_input_reference_share"  # training share per column and bin


class NoReference:
    """Stands in for the window when the model has no reference profile (trained before there was one)."""

    def record(self, X: np.ndarray, predictions: np.ndarray) -> None:
        """Nothing to count against."""

    def unavailable(self) -> NotFound:
        """The answer for /drift and its page."""
        return NotFound("this model has no reference profile; retrain it (make train) to get one")


def init_app(app: Flask) -> None:
    """Map the drift window and register the routes; called once by create_app."""
    settings = app.config["SETTINGS"]
    try:
        profile = load_profile(Path(settings.model_dir))
    except ValueError:
        app.extensions["drift"] = NoReference()
    else:
        app.extensions["drift"] = DriftWindow(profile, settings.drift_window, settings.metrics_dir)
    app.register_blueprint(bp)


def _window() -> DriftWindow:
    window = current_app.extensions["drift"]
    if isinstance(window, NoReference):
        raise window.unavailable()
    return window


@bp.get("/drift")
def drift() -> Response:
    """PSI of every feature and of the prediction over the most recent DRIFT_WINDOW records."""
    return jsonify(_window().report(current_app.extensions["predictor"].version))


@bp.get("/drift/bins")
def drift_bins() -> Response:
    """Reference and recent share per bin for every column: what the drift page draws."""
    return jsonify(_window().bins_document())


@bp.get("/drift/page")
def drift_page() -> str:
    """The drift page: a summary, then reference against recent share per bin, one chart per column."""
    window = _window()
    version = current_app.extensions["predictor"].version
    state = window.state()  # one read, so the summary and the charts describe the same records
    report = window.report(version, state)
    bins = window.bins_document(state)["columns"]
    charts = []
    for name in COLUMNS:
        entry = report["prediction"] if name not in FEATURE_NAMES else report["features"][name]
        column = bins[name]
        labels = bin_labels(column["edges"])
        recent = column["recent"] or [None] * len(labels)
        feature = BY_NAME.get(name)
        charts.append(
            {
                "name": name,
                "about": f"{feature.description}, in {feature.unit}" if feature else _PREDICTION_ABOUT,
                **entry,
                "bars": list(zip(labels, column["reference"], recent, strict=True)),
            }
        )
    features = [c for c in charts if c["name"] in FEATURE_NAMES]
    drifting = [c["name"] for c in features if c["status"] == DRIFT]
    warnings = [c["name"] for c in features if c["status"] == WARNING]
    enough = report["window"] >= report["minimum"]
    verdict = NOT_ENOUGH_DATA if not enough else DRIFT if drifting else WARNING if warnings else STABLE
    return render_template(
        "drift.html",
        charts=charts,
        drifting=drifting,
        warnings=warnings,
        enough=enough,
        verdict=verdict,
        colours=STATUS_COLOURS,
        report=report,
        since=_clock(report["since"]),
        until=_clock(report["until"]),
        now=_clock(datetime.now(UTC).isoformat(timespec="seconds")),
        capacity=window.window,
        model_version=version,
        warning=PSI_WARNING,
        drift=PSI_DRIFT,
    )


# Badge colours (background, text) per status: drift the loudest, "not enough data" the quietest.
# Each pair has a contrast ratio of at least 4.5:1 (WCAG AA for text).
STATUS_COLOURS: dict[str, tuple[str, str]] = {
    STABLE: ("#dcf1e3", "#0f5c2e"),
    WARNING: ("#fde9b5", "#6b4500"),
    DRIFT: ("#b42318", "#ffffff"),
    NOT_ENOUGH_DATA: ("#e7eaef", "#3d4556"),
}

# The prediction is in the target's unit (model.schema.TARGET_UNIT_USD dollars).
_PREDICTION_ABOUT = f"the model's answer, in units of ${TARGET_UNIT_USD:,.0f}"


def _clock(iso: str | None) -> str | None:
    """An ISO-8601 UTC time as the page shows it: "2026-12-04 20:14:03 UTC"."""
    return None if iso is None else iso.replace("T", " ").replace("+00:00", " UTC")


class DriftCollector:
    """Prometheus view of the window file's cumulative counts (already summed over the workers)."""

    def __init__(self, window: DriftWindow) -> None:
        self._window = window

    def collect(self) -> Any:
        """Yield the histogram, the per-bin counter and the reference gauge."""
        counts, sums = self._window.totals()
        histogram = HistogramMetricFamily(
            VALUE_HISTOGRAM, "Predicted records' values, buckets at the reference deciles.", labels=["column"]
        )
        per_bin = CounterMetricFamily(
            BIN_COUNTER, "Predicted records per reference bin.", labels=["column", "bin"]
        )
        reference = GaugeMetricFamily(
            REFERENCE_GAUGE, "Training rows' share per bin.", labels=["column", "bin"]
        )
        for j, column in enumerate(COLUMNS):
            edges, shares = self._window.edges(j), self._window.reference_shares(j)
            row = counts[j, : len(shares)]
            cumulative = np.cumsum(row)
            buckets = [(str(e), float(c)) for e, c in zip(edges, cumulative[:-1], strict=True)]
            histogram.add_metric([column], [*buckets, ("+Inf", float(cumulative[-1]))], float(sums[j]))
            for i, share in enumerate(shares):
                per_bin.add_metric([column, str(i)], float(row[i]))
                reference.add_metric([column, str(i)], float(share))
        yield histogram
        yield per_bin
        yield reference


def exposition() -> bytes:
    """The drift metrics in Prometheus text format (empty without a reference)."""
    window = current_app.extensions["drift"]
    if isinstance(window, NoReference):
        return b""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftCollector(window))
    return generate_latest(registry)


class IntervalCounters:
    """This worker's request counters and latency histogram, turned into per-interval differences."""

    def __init__(self, metrics: Any) -> None:
        self._metrics = metrics
        self._last: tuple[float, float, list[float]] | None = None

    def read(self) -> tuple[int, int, float | None]:
        """Requests, 5xx and p99 latency (ms; None without requests) since the previous call."""
        requests = errors = 0.0
        for family in self._metrics.requests.collect():
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    requests += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
        bounds: dict[float, float] = {}
        for family in self._metrics.latency.collect():
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    le = float(sample.labels["le"])
                    bounds[le] = bounds.get(le, 0.0) + sample.value  # summed over routes
        edges = sorted(bounds)
        cumulative = [bounds[e] for e in edges]
        previous = self._last or (0.0, 0.0, [])
        self._last = (requests, errors, cumulative)
        # a route's buckets appear with its first request: compare against zeros until then
        before = previous[2] if len(previous[2]) == len(cumulative) else [0.0] * len(cumulative)
        delta = [c - p for c, p in zip(cumulative, before, strict=True)]
        per_bucket = [delta[0], *np.diff(delta).tolist()] if delta else []
        p99_s = p99_from_buckets(edges, per_bucket) if per_bucket else None
        p99_ms = None if p99_s is None or not math.isfinite(p99_s) else p99_s * 1000
        return int(requests - previous[0]), int(errors - previous[1]), p99_ms


def start_telemetry(app: Flask) -> Emitter | None:
    """Start this worker's EMF emitter (gunicorn's post_worker_init hook calls it); None when disabled.

    Disabled unless EMF is on (service/config.py): EMF lines are for CloudWatch, which reads them
    only on AWS, where the boot script turns them on.
    """
    settings = app.config["SETTINGS"]
    interval = settings.telemetry_interval
    if not settings.emf or interval <= 0:
        return None
    counters = IntervalCounters(app.extensions["metrics"])
    window = app.extensions["drift"]

    def snapshot() -> Snapshot:
        requests, errors, p99_ms = counters.read()
        psis = {} if isinstance(window, NoReference) else window.psi_values()
        return Snapshot(requests, errors, p99_ms, psis, tuple(FEATURE_NAMES))

    emitter = Emitter(snapshot, interval_s=interval)
    emitter.start()
    return emitter
