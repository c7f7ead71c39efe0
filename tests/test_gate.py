"""The promotion gate, `python -m model.gate`, against real HTTP servers on loopback.

The same model passes (against the real service), a worse one is refused with exit 1 in one line,
another dataset or split is reported as not comparable, and a first deploy (nothing listening)
passes with a note. Metric names are read from the trained metadata, never written here.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from model import gate
from model.artifact import METADATA_FILE
from testkit.live import ROOT
from testkit.ports import free_port
from testkit.processes import stop, wait_for


@pytest.fixture(scope="module")
def live_metadata(trained_model_dir) -> dict:
    """The trained model's metadata, as the live service would show it."""
    return json.loads((trained_model_dir / METADATA_FILE).read_text())


@pytest.fixture(scope="module")
def metadata_server(live_metadata, tmp_path_factory) -> Iterator[str]:
    """A real HTTP server (python -m http.server) whose GET /metadata is the live model's metadata."""
    folder = tmp_path_factory.mktemp("live")
    (folder / "metadata").write_text(json.dumps(live_metadata))
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/metadata", 30, proc)
        yield url
    finally:
        stop(proc)


def run_gate(candidate: dict, live_url: str, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The gate as CI runs it: a subprocess, its exit code and its stdout."""
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(candidate))
    return subprocess.run(
        [sys.executable, "-m", "model.gate", "--candidate", str(path), "--live", live_url, *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _lower_is_better_metric(metadata: dict) -> str:
    names = [k for k in gate.holdout_metrics(metadata) if gate.direction(k) == 1]
    assert names, "the trained metadata records no holdout error metric"
    return names[0]


def test_same_model_passes_against_the_real_service(live_server, live_metadata, tmp_path) -> None:
    done = run_gate(live_metadata, live_server.url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("gate: passed:")
    assert done.stdout.count("\n") == 1


def test_worse_candidate_is_refused_in_one_line(metadata_server, live_metadata, tmp_path) -> None:
    worse = copy.deepcopy(live_metadata)
    name = _lower_is_better_metric(worse)
    worse["metrics"][name] += 0.02
    done = run_gate(worse, metadata_server, tmp_path)
    assert done.returncode == 1
    assert done.stdout.count("\n") == 1
    assert "gate: refused:" in done.stdout
    assert name in done.stdout


def test_a_loss_within_the_tolerance_passes(metadata_server, live_metadata, tmp_path) -> None:
    slightly = copy.deepcopy(live_metadata)
    slightly["metrics"][_lower_is_better_metric(slightly)] += 0.004
    assert run_gate(slightly, metadata_server, tmp_path, "--tolerance", "0.005").returncode == 0
    assert run_gate(slightly, metadata_server, tmp_path, "--tolerance", "0.001").returncode == 1


def test_higher_r2_is_better_not_worse(live_metadata) -> None:
    better = copy.deepcopy(live_metadata)
    for name in gate.holdout_metrics(better):
        better["metrics"][name] -= 0.05 * gate.direction(name)  # every metric improves
    verdict = gate.compare(better, live_metadata, 0.0)
    assert verdict.code == gate.PASS


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda m: m["dataset"].__setitem__("sha256", "0" * 64), "dataset sha256"),
        (lambda m: m["dataset"]["split"].__setitem__("random_state", 7), "split"),
    ],
)
def test_another_dataset_or_split_is_not_comparable(
    metadata_server, live_metadata, tmp_path, change, said
) -> None:
    other = copy.deepcopy(live_metadata)
    change(other)
    done = run_gate(other, metadata_server, tmp_path)
    assert done.returncode == 2
    assert done.stdout.startswith("gate: not comparable:")
    assert said in done.stdout


def test_first_deploy_with_nothing_listening_passes_with_a_note(live_metadata, tmp_path) -> None:
    done = run_gate(live_metadata, f"http://127.0.0.1:{free_port()}", tmp_path)
    assert done.returncode == 0
    assert "first deploy" in done.stdout


def test_summary_table_shows_both_models(metadata_server, live_metadata, tmp_path) -> None:
    summary = tmp_path / "summary.md"
    done = run_gate(live_metadata, metadata_server, tmp_path, "--summary", str(summary))
    assert done.returncode == 0
    table = summary.read_text()
    assert "| metric | candidate" in table
    for name in gate.holdout_metrics(live_metadata):
        assert f"| {name} |" in table


def test_a_server_that_is_not_this_project_is_not_comparable(
    metadata_server, live_metadata, tmp_path
) -> None:
    done = run_gate(live_metadata, metadata_server + "/elsewhere", tmp_path)
    assert done.returncode == 2
    assert "HTTP 404" in done.stdout
