"""Drift detection: the reference profile, the shared window, GET /drift, its page and /metrics.

The behaviours the issue names are pinned with real rows: the test split replayed through the real
server (gunicorn, 2 workers, loopback) stays stable; MedInc x1.5 and HouseAge +15 on test-split rows
flag exactly those two features; the window forgets; two processes' records are counted together;
below DRIFT_MIN_RECORDS nothing is judged, and a restarted server that saw the README tour's two
requests emits no PSI for the drift alarm to read.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import subprocess
import sys
import time
import types
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import numpy as np
import pytest

from model import data
from model.artifact import verify_artifact
from model.profile import PREDICTION, PROFILE_FILE, bin_index, load_profile, reference_of
from model.schema import FEATURE_NAMES
from service import telemetry
from service.drift import COLUMNS, DriftWindow, bin_labels, edge_texts, psi
from service.telemetry import (
    DRIFT,
    DRIFT_MIN_RECORDS,
    NOT_ENOUGH_DATA,
    PSI_DRIFT,
    PSI_WARNING,
    STABLE,
    STATUSES,
    psi_status,
)
from testkit.live import ROOT

WINDOW = 5_000  # the default DRIFT_WINDOW: the whole test split (4,128 rows) fits in it


@pytest.fixture(scope="module")
def test_rows() -> np.ndarray:
    """The test split's raw rows, in schema order."""
    return data.split(data.load_dataset()).X_test.to_numpy()


def drifted(rows: np.ndarray) -> np.ndarray:
    """The drift the original project simulated: incomes x1.5, houses 15 years older."""
    out = rows.copy()
    out[:, FEATURE_NAMES.index("MedInc")] *= 1.5
    out[:, FEATURE_NAMES.index("HouseAge")] += 15
    return out


def cycle(rows: np.ndarray, n: int) -> np.ndarray:
    """n rows taken from `rows` in order, wrapping around."""
    return rows[np.arange(n) % len(rows)]


# ---- the reference profile ---------------------------------------------------------------------


def test_profile_is_a_hashed_file_of_the_artifact_and_shown_in_metadata(trained_model_dir) -> None:
    metadata = verify_artifact(trained_model_dir)
    assert PROFILE_FILE in metadata["files"]  # hashed, so a swapped profile stops the server
    profile = load_profile(trained_model_dir)
    assert set(profile) == {*FEATURE_NAMES, PREDICTION}
    shown = metadata["reference_profile"]["columns"]
    for name, ref in profile.items():
        assert shown[name] == ref.as_dict()
        assert abs(sum(ref.shares) - 1) < 1e-4
        assert list(ref.edges) == sorted(set(ref.edges))


def test_reference_bins_hold_a_tenth_of_the_training_rows_each() -> None:
    values = np.arange(1000, dtype=float)
    ref = reference_of(values)
    assert len(ref.edges) == 9
    assert ref.shares == pytest.approx([0.1] * 10, abs=0.002)


def test_repeated_deciles_merge_into_fewer_bins() -> None:
    # HouseAge-like: a third of the rows at the cap
    values = np.concatenate([np.arange(600, dtype=float) % 50, np.full(400, 52.0)])
    ref = reference_of(values)
    assert len(ref.shares) == len(ref.edges) + 1 < 10
    assert ref.shares[-2] >= 0.4 - 1e-6  # the cap's bin holds the pile: (edge below 52, 52]


def test_bins_follow_prometheus_le() -> None:
    edges = np.array([1.0, 2.0])
    assert bin_index(edges, np.array([0.5, 1.0, 1.5, 2.0, 9.0])).tolist() == [0, 0, 1, 1, 2]


# ---- PSI and the thresholds --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (None, NOT_ENOUGH_DATA),
        (0.0, STABLE),
        (PSI_WARNING - 1e-9, STABLE),
        (PSI_WARNING, "warning"),
        (PSI_DRIFT, DRIFT),
    ],
)
def test_status_thresholds(value, status) -> None:
    assert psi_status(value) == status


def test_psi_is_zero_for_the_reference_itself_and_finite_with_empty_bins() -> None:
    shares = np.array([0.25, 0.25, 0.5])
    assert psi(shares * 100, shares) == pytest.approx(0.0)
    assert np.isfinite(psi(np.array([100.0, 0.0, 0.0]), shares))


# ---- the window, in process --------------------------------------------------------------------


@pytest.fixture
def window(trained_model_dir, tmp_path) -> DriftWindow:
    """A fresh window over the trained model's profile, in its own folder."""
    return DriftWindow(load_profile(trained_model_dir), 1_000, str(tmp_path))


def test_empty_window_answers_not_enough_data(window) -> None:
    report = window.report("v1")
    assert report["window"] == 0
    assert (report["since"], report["until"]) == (None, None)
    assert {e["status"] for e in report["features"].values()} == {NOT_ENOUGH_DATA}
    assert report["prediction"] == {"psi": None, "status": NOT_ENOUGH_DATA}


def test_statuses_are_distinct_and_not_enough_data_is_one_of_them() -> None:
    assert len(set(STATUSES)) == len(STATUSES) == 4
    assert NOT_ENOUGH_DATA in STATUSES


def test_below_the_minimum_even_drifted_rows_read_not_enough_data_and_have_no_psi(window, test_rows) -> None:
    window.record(drifted(test_rows[: DRIFT_MIN_RECORDS - 1]), np.ones(DRIFT_MIN_RECORDS - 1))
    report = window.report("v")
    assert report["window"] == DRIFT_MIN_RECORDS - 1
    assert report["minimum"] == DRIFT_MIN_RECORDS
    entries = [*report["features"].values(), report["prediction"]]
    assert entries == [{"psi": None, "status": NOT_ENOUGH_DATA}] * len(COLUMNS)
    assert set(window.psi_values().values()) == {None}  # what the EMF lines are built from
    # the record that reaches the minimum turns judging on: the drift is seen at once
    window.record(drifted(test_rows[DRIFT_MIN_RECORDS - 1 : DRIFT_MIN_RECORDS]), np.ones(1))
    report = window.report("v")
    assert report["features"]["MedInc"]["status"] == DRIFT
    assert report["features"]["HouseAge"]["status"] == DRIFT
    assert all(isinstance(e["psi"], float) for e in report["features"].values())


def test_a_drift_window_smaller_than_the_minimum_is_refused_at_startup() -> None:
    from service.config import ConfigError, ServiceSettings

    # such a window could never hold enough records to leave "not enough data"
    with pytest.raises(ConfigError, match="DRIFT_WINDOW"):
        ServiceSettings.from_env({"DRIFT_WINDOW": str(DRIFT_MIN_RECORDS - 1)})
    assert (
        ServiceSettings.from_env({"DRIFT_WINDOW": str(DRIFT_MIN_RECORDS)}).drift_window == DRIFT_MIN_RECORDS
    )


def test_the_window_says_since_when_its_records_came(window, test_rows, monkeypatch) -> None:
    clock = [1_800_000_000.0]  # 2027-01-15 08:00:00 UTC
    monkeypatch.setattr("service.drift.time", types.SimpleNamespace(time=lambda: clock[0]))
    window.record(test_rows[:600], np.ones(600))  # a batch: one arrival time
    clock[0] += 60
    for row in test_rows[600:1_000]:  # one at a time, as most requests come
        window.record(row[None, :], np.ones(1))
    report = window.report("v")
    assert report["since"] == "2027-01-15T08:00:00+00:00"
    assert report["until"] == "2027-01-15T08:01:00+00:00"
    # once the ring wraps, the oldest record left is one that came later
    clock[0] += 60
    window.record(test_rows[:700], np.ones(700))
    report = window.report("v")
    assert report["window"] == 1_000
    assert report["since"] == "2027-01-15T08:01:00+00:00"
    assert report["until"] == "2027-01-15T08:02:00+00:00"


def test_bin_edges_are_rounded_for_people_yet_stay_distinct() -> None:
    assert edge_texts([1166.2, 2.34567, 100_000.0, 0.0012345]) == ["1,170", "2.35", "100,000", "0.00123"]
    # three significant digits would make -122.03 and -122.0 the same; more digits are taken
    assert len(set(edge_texts([-122.03, -122.0, -121.8]))) == 3
    assert bin_labels([1.5, 2.25]) == ["≤ 1.5", "1.5 to 2.25", "> 2.25"]


def test_the_drift_page_summary_and_bins_carry_units_and_rounded_edges(client, trained_model_dir) -> None:
    from model.schema import BY_NAME

    text = client.get("/drift/page").get_data(as_text=True)
    assert 'id="summary"' in text
    assert f'data-status="{NOT_ENOUGH_DATA}"' in text
    assert f"0 of the {DRIFT_MIN_RECORDS:,} records a PSI needs" in text
    assert BY_NAME["MedInc"].unit in text
    for label in bin_labels(list(load_profile(trained_model_dir)["Population"].edges)):
        assert f">{label.replace('>', '&gt;')}<" in text
    assert 'href="/drift/page">Refresh<' in text
    # the page's card is no longer the status rule's element: a status only colours its badges
    assert '<main class="drift-page">' in text


def test_one_row_and_batch_paths_count_the_same_bins(trained_model_dir, tmp_path, test_rows) -> None:
    profile = load_profile(trained_model_dir)
    rows = test_rows[:50]
    predictions = rows[:, 0] * 0.4  # any values: only the binning is compared
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one_by_one = DriftWindow(profile, 100, str(tmp_path / "a"))
    batch = DriftWindow(profile, 100, str(tmp_path / "b"))
    for row, p in zip(rows, predictions, strict=True):
        one_by_one.record(row[None, :], np.array([p]))
    batch.record(rows, predictions)
    assert [c.tolist() for c in one_by_one.recent_counts()[1]] == [
        c.tolist() for c in batch.recent_counts()[1]
    ]
    assert np.array_equal(one_by_one.totals()[0], batch.totals()[0])


def test_window_forgets_old_records(window, test_rows) -> None:
    window.record(drifted(test_rows[:1_000]), np.ones(1_000))
    assert window.report("v")["features"]["MedInc"]["status"] == DRIFT
    window.record(test_rows[1_000:2_000], np.ones(1_000))  # a full window of ordinary rows
    report = window.report("v")
    assert report["window"] == 1_000
    assert report["features"]["MedInc"]["status"] == STABLE
    # the cumulative counts (for /metrics) keep everything
    assert int(window.totals()[0][0].sum()) == 2_000


def test_a_batch_larger_than_the_window_keeps_its_most_recent_records(window, test_rows) -> None:
    rows = np.concatenate([drifted(test_rows[:1_500]), test_rows[:1_000]])
    window.record(rows, np.ones(len(rows)))
    assert window.report("v")["features"]["HouseAge"]["status"] == STABLE


def _record_in_child(model_dir: str, folder: str, rows: np.ndarray) -> None:
    DriftWindow(load_profile(__import__("pathlib").Path(model_dir)), 1_000, folder).record(
        rows, np.ones(len(rows))
    )


def test_two_processes_share_one_window(trained_model_dir, tmp_path, test_rows) -> None:
    ctx = multiprocessing.get_context("fork")
    procs = [
        ctx.Process(
            target=_record_in_child,
            args=(str(trained_model_dir), str(tmp_path), test_rows[i * 300 : (i + 1) * 300]),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    here = DriftWindow(load_profile(trained_model_dir), 1_000, str(tmp_path))
    assert here.report("v")["window"] == 600


# ---- the routes, through the Flask client ------------------------------------------------------


def _predict_in_process(client, rows: np.ndarray) -> None:
    """Predict rows through the Flask client, in batches the fixture's MAX_BATCH (50) admits."""
    for start in range(0, len(rows), 50):
        records = [dict(zip(FEATURE_NAMES, map(float, r), strict=True)) for r in rows[start : start + 50]]
        assert client.post("/predict", json={"instances": records}).status_code == 200


def test_drift_route_shape(client, test_rows) -> None:
    body = client.get("/drift").get_json()
    assert set(body) == {"window", "minimum", "since", "until", "features", "prediction", "reference"}
    assert list(body["features"]) == list(FEATURE_NAMES)
    assert body["reference"] == client.get("/metadata").get_json()["model_version"]
    _predict_in_process(client, test_rows[:3])
    after = client.get("/drift").get_json()
    assert after["window"] == 3
    assert {e["status"] for e in after["features"].values()} == {NOT_ENOUGH_DATA}
    assert datetime.fromisoformat(after["since"]) <= datetime.fromisoformat(after["until"])
    _predict_in_process(client, test_rows[3:DRIFT_MIN_RECORDS])
    judged = client.get("/drift").get_json()
    assert judged["window"] == DRIFT_MIN_RECORDS
    assert all(isinstance(e["psi"], float) for e in judged["features"].values())
    assert {e["status"] for e in judged["features"].values()} == {STABLE}


def test_drift_page_is_linked_from_the_playground_and_the_report(client) -> None:
    page = client.get("/drift/page")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert all(f'id="{name}"' in text for name in COLUMNS)
    assert "/drift/page" in client.get("/").get_data(as_text=True)
    assert "/drift/page" in client.get("/report").get_data(as_text=True)


def test_metrics_expose_histograms_with_the_reference_edges(client, trained_model_dir) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    record = dict(zip(FEATURE_NAMES, [8.3252, 41, 6.98, 1.02, 322, 2.56, 37.88, -122.23], strict=True))
    client.post("/predict", json=record)
    families = {
        f.name: f for f in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True))
    }
    ref = load_profile(trained_model_dir)["MedInc"]
    medinc = [s for s in families["model_input_value"].samples if s.labels["column"] == "MedInc"]
    buckets = [s for s in medinc if s.name.endswith("_bucket")]
    assert [float(s.labels["le"]) for s in buckets] == [*ref.edges, float("inf")]
    assert [s.value for s in medinc if s.name.endswith("_count")] == [1.0]
    # the record's bin, counted once; the training share of every bin beside it
    expected_bin = int(bin_index(np.asarray(ref.edges), np.array([record["MedInc"]]))[0])
    per_bin = {
        s.labels["bin"]: s.value
        for s in families["model_input_bin_records"].samples
        if s.labels["column"] == "MedInc" and s.name.endswith("_total")
    }
    assert per_bin == {str(i): float(i == expected_bin) for i in range(len(ref.shares))}
    shares = [
        s.value for s in families["model_input_reference_share"].samples if s.labels["column"] == "MedInc"
    ]
    assert shares == list(ref.shares)


# ---- the real server: gunicorn, 2 workers ------------------------------------------------------


def _post(url: str, rows: np.ndarray) -> None:
    body = json.dumps({"instances": [dict(zip(FEATURE_NAMES, map(float, r), strict=True)) for r in rows]})
    request = urllib.request.Request(
        f"{url}/predict", data=body.encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _replay(url: str, rows: np.ndarray, batch: int = 250) -> None:
    # several connections at once, so both workers serve some of it
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: _post(url, rows[i : i + batch]), range(0, len(rows), batch)))


def _drift(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/drift", timeout=10) as response:
        return json.load(response)


def drift_report(url: str) -> subprocess.CompletedProcess[str]:
    """The weekly workflow's command against the server."""
    command = [sys.executable, "-m", "smoke.drift_report", url]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)


def _statuses(report: dict) -> dict[str, str]:
    return {name: entry["status"] for name, entry in report["features"].items()}


@pytest.fixture(scope="module")
def drift_server(trained_model_dir):
    """The real service with the default window, 2 workers; its own, so the window starts empty."""
    from testkit.live import gunicorn

    with gunicorn(trained_model_dir, {"WORKERS": "2", "DRIFT_WINDOW": str(WINDOW)}) as server:
        yield server


def test_live_replay_of_the_test_split_is_stable_then_drift_is_caught_then_forgotten(drift_server, test_rows):
    url = drift_server.url
    assert _drift(url)["window"] == 0

    _replay(url, test_rows)
    report = _drift(url)
    assert report["window"] == len(test_rows)  # every record, whichever worker served it
    assert set(_statuses(report).values()) == {STABLE}, report

    _replay(url, cycle(drifted(test_rows), WINDOW))
    report = _drift(url)
    assert report["window"] == WINDOW
    flagged = {name for name, status in _statuses(report).items() if status == DRIFT}
    assert flagged == {"MedInc", "HouseAge"}, report
    # the weekly report fails on it, naming both
    done = drift_report(url)
    assert done.returncode == 1
    assert done.stdout.splitlines()[-1] == "drift report: drift in HouseAge, MedInc"

    _replay(url, cycle(test_rows, WINDOW))
    assert set(_statuses(_drift(url)).values()) == {STABLE}
    done = drift_report(url)
    assert done.returncode == 0
    assert "| MedInc |" in done.stdout


# ---- a restart: the README tour's two requests must not look like drift ------------------------


def readme_tour_predictions() -> list[dict]:
    """The bodies of the README tour's `curl ... /predict` requests, as a newcomer sends them."""
    readme = (ROOT / "README.md").read_text()
    bodies = re.findall(
        r"curl -s \$URL/predict -H 'Content-Type: application/json' \\\n\s*-d '(.*?)'", readme, re.S
    )
    return [json.loads(b) for b in bodies]


def _post_json(url: str, body: dict) -> None:
    request = urllib.request.Request(
        f"{url}/predict", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200


def _emf(server, until) -> list[dict]:
    """The server's EMF lines so far, polled until `until(lines)` holds (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        docs = [json.loads(ln) for ln in server.log.read_text().splitlines() if ln.startswith('{"_aws"')]
        if until(docs) or time.monotonic() > deadline:
            return docs
        time.sleep(0.5)


def test_a_restarted_server_after_the_readme_tour_reads_no_drift_and_emits_no_psi(
    trained_model_dir, test_rows
):
    from testkit.live import gunicorn

    tour = readme_tour_predictions()
    assert len(tour) == 2, "the README tour's two /predict requests were not found"
    # a fresh server is a restart: gunicorn's on_starting hook gives it an empty window. EMF=1 is the
    # switch the boot script sets on AWS, where CloudWatch reads the lines.
    env = {"WORKERS": "2", "TELEMETRY_INTERVAL": "1", "EMF": "1"}
    with gunicorn(trained_model_dir, env) as server:
        for body in tour:
            _post_json(server.url, body)
        report = _drift(server.url)
        assert report["window"] == 2
        assert {e["status"] for e in [*report["features"].values(), report["prediction"]]} == {
            NOT_ENOUGH_DATA
        }
        # every worker prints each interval, traffic or not: wait for lines printed a full interval
        # after the tour, so they were built from the window holding the tour's records
        after_ms = (time.time() + 1) * 1000

        def after_tour(docs: list[dict]) -> list[dict]:
            return [d for d in docs if d["_aws"]["Timestamp"] >= after_ms and telemetry.REQUESTS in d]

        docs = _emf(server, lambda d: len(after_tour(d)) >= 2)
        assert len(after_tour(docs)) >= 2, "the workers printed no EMF line after the tour"
        assert not [d for d in docs if telemetry.DRIFT_PSI in d or telemetry.DRIFT_PSI_MAX in d]

        # the same server, once the window holds the minimum of ordinary rows: PSI is sent, and stable
        _replay(server.url, test_rows[:DRIFT_MIN_RECORDS])
        docs = _emf(server, lambda d: any(telemetry.DRIFT_PSI_MAX in x for x in d))
        largest = [d[telemetry.DRIFT_PSI_MAX] for d in docs if telemetry.DRIFT_PSI_MAX in d]
        assert largest, "no DriftPSIMax once the window held the minimum"
        assert max(largest) < PSI_WARNING
        assert set(_statuses(_drift(server.url)).values()) == {STABLE}
