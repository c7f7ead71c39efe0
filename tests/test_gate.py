"""The promotion gate, `python -m model.gate`, against real HTTP servers on loopback.

The gate judges a candidate on the random-split and the spatial CV (fold by fold, with tolerances from
the spread of the per-fold differences) and on the test RMSE as a last check, all read from the two
metadata documents. The session's model is trained without CV (to keep the suite quick), so these
tests give its metadata the per-fold RMSEs a full training run records (`make report`), and then
change those figures the way a better or worse candidate would.
"""

from __future__ import annotations

import copy
import json
import shutil
import statistics
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from model import gate
from model.artifact import METADATA_FILE
from model.scores import RANDOM_CV, SPATIAL_CV, TEST
from testkit.live import ROOT, gunicorn
from testkit.ports import free_port
from testkit.processes import stop, wait_for

# The served design's per-fold RMSEs in a full training run (issue 16's design, python -m model.train).
FULL_RUN_FOLDS = {
    RANDOM_CV.key: [0.41798, 0.39571, 0.39505, 0.40832, 0.39195],
    SPATIAL_CV.key: [0.73416, 0.75485, 0.63074, 0.58209, 0.45914],
}


def with_folds(metadata: dict, folds: dict[str, list[float]] = FULL_RUN_FOLDS) -> dict:
    """A copy of `metadata` recording per-fold CV RMSEs for its served model, as a CV run writes them."""
    out = copy.deepcopy(metadata)
    entry = {}
    for key, values in folds.items():
        entry |= {
            f"{key}_mean": statistics.fmean(values),
            f"{key}_std": statistics.stdev(values),
            f"{key}_folds": list(values),
        }
        out["metrics"][f"{key}_mean"] = statistics.fmean(values)
    out["evaluation"]["models"] = {out["estimator"]: entry}
    return out


def shifted(metadata: dict, key: str, by: list[float] | float) -> dict:
    """A copy whose served model's folds of `key` are each moved by `by` (one value, or one per fold)."""
    out = copy.deepcopy(metadata)
    entry = out["evaluation"]["models"][out["estimator"]]
    steps = by if isinstance(by, list) else [by] * len(entry[f"{key}_folds"])
    entry[f"{key}_folds"] = [v + d for v, d in zip(entry[f"{key}_folds"], steps, strict=True)]
    return out


@pytest.fixture(scope="module")
def trained_metadata(trained_model_dir) -> dict:
    """The session model's metadata.json, as training wrote it (no CV)."""
    return json.loads((trained_model_dir / METADATA_FILE).read_text())


@pytest.fixture(scope="module")
def live_metadata(trained_metadata) -> dict:
    """The live model's metadata, with the per-fold figures a full training run records."""
    return with_folds(trained_metadata)


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


@pytest.fixture(scope="module")
def live_service_with_cv(trained_model_dir, tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """The real service (gunicorn) serving a copy of the session's artifact whose metadata.json holds
    a full run's CV folds; yields its URL and that metadata."""
    folder = tmp_path_factory.mktemp("cv-artifact") / "model"
    shutil.copytree(trained_model_dir.resolve(), folder)
    metadata = with_folds(json.loads((folder / METADATA_FILE).read_text()))
    (folder / METADATA_FILE).write_text(json.dumps(metadata))
    with gunicorn(folder, {"WORKERS": "1"}) as server:
        yield server.url, metadata


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


def figure_lines(stdout: str) -> dict[str, str]:
    """The report's line for each figure, by the figure's label."""
    lines = stdout.splitlines()[1:]
    return {
        f.label: next(line for line in lines if line.strip().startswith(f.label))
        for f in (RANDOM_CV, SPATIAL_CV, TEST)
    }


# --- the decision -----------------------------------------------------------------------------------


def test_the_live_model_passes_against_itself_through_the_real_service(
    live_service_with_cv, tmp_path
) -> None:
    url, metadata = live_service_with_cv
    done = run_gate(metadata, url, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("gate: passed:")
    for line in figure_lines(done.stdout).values():
        assert "worse by +0.0000" in line
        assert line.endswith(": ok")


def test_equal_test_rmse_but_005_worse_on_spatial_cv_is_refused(
    metadata_server, live_metadata, tmp_path
) -> None:
    worse = shifted(live_metadata, SPATIAL_CV.key, 0.05)
    assert worse["metrics"][TEST.key] == live_metadata["metrics"][TEST.key]
    done = run_gate(worse, metadata_server, tmp_path)
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith(f"gate: refused: candidate {worse['model_version']}")
    assert SPATIAL_CV.label in done.stdout.splitlines()[0]
    lines = figure_lines(done.stdout)
    assert lines[SPATIAL_CV.label].endswith("REFUSED")
    assert "worse by +0.0500" in lines[SPATIAL_CV.label]
    assert lines[TEST.label].endswith(": ok")


def test_a_better_test_rmse_does_not_buy_back_a_worse_spatial_cv(
    metadata_server, live_metadata, tmp_path
) -> None:
    worse = shifted(live_metadata, SPATIAL_CV.key, 0.05)
    worse["metrics"][TEST.key] -= 0.02
    done = run_gate(worse, metadata_server, tmp_path)
    assert done.returncode == 1
    assert figure_lines(done.stdout)[TEST.label].endswith(": ok")


def test_a_worse_random_split_cv_is_refused(metadata_server, live_metadata, tmp_path) -> None:
    done = run_gate(shifted(live_metadata, RANDOM_CV.key, 0.01), metadata_server, tmp_path)
    assert done.returncode == 1
    assert RANDOM_CV.label in done.stdout.splitlines()[0]


def test_the_tolerance_comes_from_the_spread_of_the_per_fold_differences(live_metadata) -> None:
    # The same mean loss (+0.004) passes when the folds disagree about it and is refused when
    # every fold agrees: the gate tells a consistent loss from noise.
    noisy = shifted(live_metadata, SPATIAL_CV.key, [0.05, -0.04, 0.03, -0.03, 0.01])
    consistent = shifted(live_metadata, SPATIAL_CV.key, 0.004)
    (noisy_cmp,) = [c for c in gate.compare(noisy, live_metadata).comparisons if c.figure == SPATIAL_CV]
    assert noisy_cmp.worse_by == pytest.approx(0.004)
    assert noisy_cmp.tolerance == pytest.approx(
        gate.TOLERANCE_STANDARD_ERRORS * statistics.stdev([0.05, -0.04, 0.03, -0.03, 0.01]) / 5**0.5
    )
    assert gate.compare(noisy, live_metadata).code == gate.PASS
    assert gate.compare(consistent, live_metadata).code == gate.WORSE


def test_an_improvement_is_never_refused(live_metadata) -> None:
    better = shifted(shifted(live_metadata, SPATIAL_CV.key, -0.03), RANDOM_CV.key, -0.01)
    better["metrics"][TEST.key] -= 0.01
    verdict = gate.compare(better, live_metadata)
    assert verdict.code == gate.PASS
    assert all(c.worse_by < 0 for c in verdict.comparisons)


def test_the_test_rmse_is_checked_last_with_the_live_random_cv_standard_error(live_metadata) -> None:
    allowed = gate.TOLERANCE_STANDARD_ERRORS * statistics.stdev(FULL_RUN_FOLDS[RANDOM_CV.key]) / 5**0.5
    for loss, code in ((allowed * 0.9, gate.PASS), (allowed * 1.1, gate.WORSE)):
        candidate = copy.deepcopy(live_metadata)
        candidate["metrics"][TEST.key] += loss
        verdict = gate.compare(candidate, live_metadata)
        assert verdict.code == code, verdict.report()
        assert verdict.comparisons[-1].figure == TEST


def test_the_report_names_each_figure_with_both_models_spread(
    metadata_server, live_metadata, tmp_path
) -> None:
    done = run_gate(live_metadata, metadata_server, tmp_path)
    assert done.returncode == 0
    lines = figure_lines(done.stdout)
    assert len(done.stdout.splitlines()) == 1 + len(lines)
    spatial = (
        statistics.fmean(FULL_RUN_FOLDS[SPATIAL_CV.key]),
        statistics.stdev(FULL_RUN_FOLDS[SPATIAL_CV.key]),
    )
    assert f"candidate {spatial[0]:.4f} ± {spatial[1]:.4f}" in lines[SPATIAL_CV.label]
    assert "SE of the 5 per-fold differences" in lines[RANDOM_CV.label]


def test_the_gate_reads_figures_and_never_imports_training(live_metadata, metadata_server, tmp_path) -> None:
    # Figures come from the two metadata documents: running the gate loads nothing that could fit a model.
    path = tmp_path / "candidate.json"
    path.write_text(json.dumps(live_metadata))
    probe = (
        "import runpy, sys\n"
        f"sys.argv = ['gate', '--candidate', {str(path)!r}, '--live', {metadata_server!r}]\n"
        "try:\n    runpy.run_module('model.gate', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'sklearn', 'lightgbm')"
        " or m in ('model.train', 'model.pipeline', 'model.evaluate', 'model.data', 'scipy'))\n"
        "print('RESULT', code, heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.splitlines()[-1] == "RESULT 0 []", done.stdout + done.stderr


# --- what cannot be compared ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "said"),
    [
        (lambda m: m["dataset"].__setitem__("sha256", "0" * 64), "dataset sha256"),
        (lambda m: m["dataset"]["split"].__setitem__("random_state", 7), "split"),
        (
            lambda m: m["evaluation"].__setitem__("spatial_cv", "GroupKFold(5) over 2 degree cells"),
            "spatial_cv",
        ),
        (lambda m: m["evaluation"].__setitem__("training_rows", 100), "training_rows"),
    ],
)
def test_another_dataset_split_or_fold_protocol_is_not_comparable(
    metadata_server, live_metadata, tmp_path, change, said
) -> None:
    other = copy.deepcopy(live_metadata)
    change(other)
    done = run_gate(other, metadata_server, tmp_path)
    assert done.returncode == 2
    assert done.stdout.startswith("gate: not comparable:")
    assert said in done.stdout


def test_a_candidate_trained_without_cv_is_not_comparable(
    trained_metadata, metadata_server, tmp_path
) -> None:
    done = run_gate(trained_metadata, metadata_server, tmp_path)
    assert done.returncode == 2
    assert "the candidate records no random-split CV RMSE folds" in done.stdout


def test_a_live_model_without_cv_folds_fails_closed(live_server, live_metadata, tmp_path) -> None:
    # The session's real service runs a model trained with --no-cv: nothing to defend it with.
    done = run_gate(live_metadata, live_server.url, tmp_path)
    assert done.returncode == 2
    assert "the live model records no random-split CV RMSE folds" in done.stdout


def test_folds_of_another_count_are_not_comparable(live_metadata) -> None:
    other = copy.deepcopy(live_metadata)
    entry = other["evaluation"]["models"][other["estimator"]]
    entry[f"{SPATIAL_CV.key}_folds"] = entry[f"{SPATIAL_CV.key}_folds"][:4]
    verdict = gate.compare(other, live_metadata)
    assert verdict.code == gate.INCOMPARABLE
    assert "4 folds against 5" in verdict.line


def test_a_server_that_is_not_this_project_is_not_comparable(
    metadata_server, live_metadata, tmp_path
) -> None:
    done = run_gate(live_metadata, metadata_server + "/elsewhere", tmp_path)
    assert done.returncode == 2
    assert "HTTP 404" in done.stdout


def test_an_unreadable_candidate_is_not_comparable(metadata_server, tmp_path) -> None:
    path = tmp_path / "candidate.json"
    path.write_text("{not json")
    done = subprocess.run(
        [sys.executable, "-m", "model.gate", "--candidate", str(path), "--live", metadata_server],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout.startswith("gate: cannot read the candidate")


# --- the live service unreachable: fail closed, unless this is the first deploy -------------------


@pytest.mark.parametrize("url", ["closed port", ""], ids=["nothing-listening", "no-url"])
def test_an_unreachable_live_service_fails_closed(live_metadata, tmp_path, url) -> None:
    live = f"http://127.0.0.1:{free_port()}" if url else ""
    done = run_gate(live_metadata, live, tmp_path)
    assert done.returncode == 2
    assert done.stdout.startswith("gate: live service unreachable")


@pytest.mark.parametrize("url", ["closed port", ""], ids=["nothing-listening", "no-url"])
def test_a_first_deploy_with_no_live_service_passes_with_a_note(live_metadata, tmp_path, url) -> None:
    live = f"http://127.0.0.1:{free_port()}" if url else ""
    done = run_gate(live_metadata, live, tmp_path, "--first-deploy")
    assert done.returncode == 0
    assert done.stdout.startswith("gate: passed with a note: first deploy")


def test_first_deploy_still_compares_when_a_live_service_answers(
    metadata_server, live_metadata, tmp_path
) -> None:
    done = run_gate(shifted(live_metadata, SPATIAL_CV.key, 0.05), metadata_server, tmp_path, "--first-deploy")
    assert done.returncode == 1
    assert done.stdout.startswith("gate: refused:")


def test_summary_table_shows_each_figure_of_both_models(metadata_server, live_metadata, tmp_path) -> None:
    summary = tmp_path / "summary.md"
    done = run_gate(
        shifted(live_metadata, SPATIAL_CV.key, 0.05), metadata_server, tmp_path, "--summary", str(summary)
    )
    assert done.returncode == 1
    table = summary.read_text()
    assert "| figure | candidate" in table
    for figure in (RANDOM_CV, SPATIAL_CV, TEST):
        assert f"| {figure.label} |" in table
    assert "| +0.0500 | 0.0010 | refused |" in table
