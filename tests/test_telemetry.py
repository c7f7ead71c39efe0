"""CloudWatch Embedded Metric Format lines: their JSON shape, their figures, and the real server's output.

The schema below is written from the EMF specification
(https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html):
the log event is one JSON object whose `_aws` member holds a millisecond `Timestamp` and
`CloudWatchMetrics`, an array of MetricDirectives, each with a `Namespace` (1-1024 characters),
`Dimensions` (an array of DimensionSets: arrays of at most 30 keys, possibly empty) and `Metrics`
(at most 100 MetricDefinitions: a `Name`, an optional `Unit` from the listed set, an optional
`StorageResolution` of 1 or 60). Every dimension key and metric name must be a member of the root
("target members"), a metric's value a number or an array of at most 100 numbers, a dimension's a
string. The cross-references are checked in Python, beside the schema.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import jsonschema
import pytest

from model.schema import FEATURE_NAMES
from service import telemetry
from testkit.live import ROOT

UNITS = [
    "Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
    "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
    "Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
    "Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
]  # fmt: skip
EMF_SCHEMA = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "additionalProperties": False,
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "maxItems": 30,
                                    "items": {"type": "string", "minLength": 1},
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {"enum": UNITS},
                                        "StorageResolution": {"enum": [1, 60]},
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def validate_emf(line: str) -> dict:
    """Parse one log event and check it against the specification; returns the document."""
    assert line == line.strip()
    assert line.startswith("{")
    assert line.endswith("}")
    document = json.loads(line)
    jsonschema.validate(document, EMF_SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for key in dimension_set:
                assert isinstance(document.get(key), str), (
                    f"dimension {key} is not a string member of the root"
                )
        for metric in directive["Metrics"]:
            value = document.get(metric["Name"])
            values = value if isinstance(value, list) else [value]
            assert len(values) <= 100
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values), metric
    return document


def snapshot(**overrides) -> telemetry.Snapshot:
    """A snapshot with every figure present, psi for each feature and the prediction."""
    psi = {name: 0.01 * (i + 1) for i, name in enumerate(FEATURE_NAMES)} | {"prediction": 0.5}
    fields = {
        "requests": 120,
        "errors_5xx": 3,
        "latency_p99_ms": 5.0,
        "psi": psi,
        "features": tuple(FEATURE_NAMES),
    }
    return telemetry.Snapshot(**(fields | overrides))


def test_emf_lines_validate_and_carry_the_figures() -> None:
    lines = telemetry.emf_lines(snapshot(), 1_700_000_000_000)
    docs = [validate_emf(line) for line in lines]
    service = docs[0]
    assert service["_aws"]["CloudWatchMetrics"][0]["Namespace"] == telemetry.NAMESPACE
    assert service[telemetry.REQUESTS] == 120
    assert service[telemetry.ERRORS_5XX] == 3
    assert service[telemetry.LATENCY_P99] == 5.0
    # the largest PSI among the features, not the prediction's
    assert service[telemetry.DRIFT_PSI_MAX] == pytest.approx(0.08)
    per_column = {d[telemetry.FEATURE_DIMENSION]: d[telemetry.DRIFT_PSI] for d in docs[1:]}
    assert set(per_column) == {*FEATURE_NAMES, "prediction"}


def test_missing_figures_are_left_out_not_sent_as_zero() -> None:
    lines = telemetry.emf_lines(snapshot(latency_p99_ms=None, psi=dict.fromkeys(FEATURE_NAMES)), 1)
    assert len(lines) == 1
    doc = validate_emf(lines[0])
    names = [m["Name"] for m in doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    assert names == [telemetry.REQUESTS, telemetry.ERRORS_5XX]
    assert telemetry.LATENCY_P99 not in doc


def test_a_line_without_its_target_member_fails_the_check() -> None:
    # the validator itself must catch the spec's commonest mistake
    doc = json.loads(telemetry.emf_lines(snapshot(), 1)[0])
    del doc[telemetry.REQUESTS]
    with pytest.raises(AssertionError):
        validate_emf(json.dumps(doc))


@pytest.mark.parametrize(
    ("counts", "p99"),
    [([100, 0, 0], 0.001), ([90, 9, 1], 0.01), ([0, 0, 5], 0.1), ([0, 0, 0], None), ([0, 0, 0, 3], 0.1)],
)
def test_p99_is_the_bucket_holding_the_99th_percentile(counts, p99) -> None:
    bounds = [0.001, 0.01, 0.1, float("inf")][: len(counts)]
    assert telemetry.p99_from_buckets(bounds, counts) == p99


def test_emitter_writes_whole_lines_to_its_stream() -> None:
    out = io.StringIO()
    telemetry.Emitter(snapshot, stream=out).emit_once()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 + len(FEATURE_NAMES) + 1
    for line in lines:
        validate_emf(line)


def test_importing_the_shared_module_does_no_work() -> None:
    # the Pulumi program imports it: no thread, no third-party import, nothing printed
    code = (
        "import sys, threading, service.telemetry;"
        "assert threading.active_count() == 1;"
        "assert not {'numpy', 'flask', 'prometheus_client'} & {m.split('.')[0] for m in sys.modules}"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_the_real_server_prints_valid_emf_lines(trained_model_dir) -> None:
    from testkit.live import gunicorn
    from tests.test_drift import _post

    with gunicorn(trained_model_dir, {"WORKERS": "2", "TELEMETRY_INTERVAL": "1", "EMF": "1"}) as server:
        # the window's minimum, so the PSI lines are printed too
        rows = [[8.3252, 41, 6.98, 1.02, 322, 2.56, 37.88, -122.23]] * telemetry.DRIFT_MIN_RECORDS
        import numpy as np

        _post(server.url, np.array(rows))
        deadline = time.monotonic() + 30
        docs: list[dict] = []
        while time.monotonic() < deadline:
            lines = [ln for ln in server.log.read_text().splitlines() if '"_aws"' in ln]
            docs = [validate_emf(ln) for ln in lines]
            if (
                any(d.get(telemetry.DRIFT_PSI_MAX) is not None for d in docs)
                and sum(d.get(telemetry.REQUESTS, 0) for d in docs) >= 2
            ):
                break
            time.sleep(0.5)
    assert docs, "the server printed no EMF line"
    assert sum(d.get(telemetry.REQUESTS, 0) for d in docs) >= 2  # /ready and /predict at least
    assert any(d.get(telemetry.FEATURE_DIMENSION) == "MedInc" for d in docs)


def test_interval_figures_count_only_the_interval_and_see_the_first_requests_latency(app) -> None:
    from service.monitor import IntervalCounters

    counters = IntervalCounters(app.extensions["metrics"])
    assert counters.read() == (0, 0, None)  # before any request: no route's histogram exists yet
    client = app.test_client()
    client.get("/health")
    client.get("/health")
    requests, errors, p99_ms = counters.read()
    assert (requests, errors) == (2, 0)
    assert p99_ms is not None
    assert p99_ms > 0
    assert counters.read() == (0, 0, None)  # nothing new in the next interval


def test_a_worker_starts_an_emitter_only_when_emf_is_on(trained_model_dir) -> None:
    from service import create_app
    from service.config import ServiceSettings
    from service.monitor import start_telemetry

    def app(**settings):
        return create_app({"SETTINGS": ServiceSettings(model_dir=trained_model_dir, **settings)})

    assert start_telemetry(app()) is None  # a local `make run`: people's logs only
    assert start_telemetry(app(emf=True, telemetry_interval=0)) is None
    emitter = start_telemetry(app(emf=True, telemetry_interval=3600))
    try:
        assert isinstance(emitter, telemetry.Emitter)
    finally:
        emitter.stop()
