"""Saved CV figures (model/cache.py): reused only for the very inputs that produced them."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from model import cache, crossval, data, evaluate, pipeline
from model import train as train_module
from model.progress import Silent
from testkit.live import ROOT

ROWS = np.arange(80, dtype=np.float64).reshape(10, 8)
TARGET = np.linspace(0.5, 5.0, 10)


def figures(value: float = 0.5) -> dict[str, dict[str, evaluate.CVResult]]:
    """Stand-in CV results in the shape cross_validate returns."""
    return {
        name: {key: evaluate.CVResult((value, value + 0.1, value + 0.2)) for key in crossval.FOLD_SETS}
        for name in crossval.MODELS
    }


def test_a_saved_evaluation_is_reused_for_the_same_inputs_with_every_fold_exact(tmp_path):
    path = tmp_path / "evaluation.json"
    stamp = cache.fingerprint(ROWS, TARGET)
    saved = figures(0.1 + 0.2)  # 0.30000000000000004: a float that must survive the round trip
    cache.save(path, stamp, saved)
    reused, reason = cache.lookup(path, cache.fingerprint(ROWS, TARGET))
    assert reused == saved
    assert stamp.sha256[:12] in reason


def test_other_training_rows_are_a_miss_that_names_what_changed(tmp_path):
    path = tmp_path / "evaluation.json"
    cache.save(path, cache.fingerprint(ROWS, TARGET), figures())
    reused, reason = cache.lookup(path, cache.fingerprint(ROWS, TARGET + 1))
    assert reused is None
    assert "training_rows.sha256" in reason


def test_a_changed_model_module_changes_the_fingerprint(tmp_path, monkeypatch):
    before = cache.fingerprint(ROWS, TARGET)
    copy = tmp_path / "model"
    shutil.copytree(cache.PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "pipeline.py").write_text((copy / "pipeline.py").read_text() + "\n# a change\n")
    monkeypatch.setattr(cache, "PACKAGE_DIR", copy)
    after = cache.fingerprint(ROWS, TARGET)
    assert after.sha256 != before.sha256
    assert cache.differences(before.inputs, after.inputs) == ["code.model/pipeline.py"]


def test_the_fingerprint_covers_every_model_module_the_cross_validation_imports():
    names = {path.name for path in cache.code_files()}
    # crossval and what it reaches: the estimators, the features, the data, the folds, the pool
    assert {"crossval.py", "evaluate.py", "pipeline.py", "features.py", "data.py", "parallel.py"} <= names
    # not what only reports or serves: a change there leaves the CV figures as they are
    assert not {"report.py", "train.py", "runtime.py", "cache.py"} & names
    assert set(cache.library_versions()) == {*cache.LIBRARIES, "python", "machine"}


@pytest.mark.parametrize(
    "edit",
    [
        lambda doc: doc["models"][crossval.SERVED_NAME]["cv_rmse"].__setitem__(0, 0.1),  # a better score
        lambda doc: doc["inputs"]["versions"].__setitem__("lightgbm", "0.0"),  # a claim of other inputs
        lambda doc: doc.pop("checksum"),
    ],
)
def test_an_evaluation_edited_after_it_was_saved_is_never_reused(tmp_path, edit):
    path = tmp_path / "evaluation.json"
    stamp = cache.fingerprint(ROWS, TARGET)
    cache.save(path, stamp, figures())
    document = json.loads(path.read_text())
    edit(document)
    path.write_text(json.dumps(document))
    reused, reason = cache.lookup(path, stamp)
    assert reused is None
    assert "altered" in reason or "not a saved evaluation" in reason


def test_a_missing_or_unreadable_file_is_a_miss_not_an_error(tmp_path):
    stamp = cache.fingerprint(ROWS, TARGET)
    assert cache.lookup(tmp_path / "absent.json", stamp)[0] is None
    (tmp_path / "bad.json").write_text("{not json")
    reused, reason = cache.lookup(tmp_path / "bad.json", stamp)
    assert reused is None
    assert "not a saved evaluation" in reason


def test_training_records_where_its_cv_figures_came_from(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        train_module, "cross_validate", lambda X, y, **_: calls.append(len(X)) or figures(0.7)
    )
    progress = Silent(train_module.STAGES)
    path = tmp_path / "evaluation.json"
    computed, stamp = train_module._evaluation_figures(ROWS, TARGET, reuse=path, workers=1, progress=progress)
    assert calls == [len(ROWS)]
    assert stamp["figures_from"] == "computed in this run"
    assert stamp["sha256"] == cache.fingerprint(ROWS, TARGET).sha256
    cache.save(path, cache.Fingerprint(stamp["sha256"], stamp["inputs"]), computed)
    reused, again = train_module._evaluation_figures(ROWS, TARGET, reuse=path, workers=1, progress=progress)
    assert calls == [len(ROWS)]  # not computed a second time
    assert reused == computed
    # in the run's order, not the file's (sorted) one: metadata and the report list the served model first
    assert list(reused) == list(crossval.MODELS)
    assert all(list(sets) == list(crossval.FOLD_SETS) for sets in reused.values())
    assert again["figures_from"] == f"reused from {path} (fingerprint matched)"
    assert again["inputs"] == stamp["inputs"]


def test_make_run_reuses_the_evaluation_that_make_report_saves():
    makefile = (ROOT / "Makefile").read_text()
    declared = re.search(r"^EVALUATION_CACHE \?= (\S+)$", makefile, re.MULTILINE)
    assert declared, "the Makefile no longer declares EVALUATION_CACHE"
    assert ROOT / declared.group(1) == cache.SHIPPED
    assert "--reuse-evaluation $(EVALUATION_CACHE)" in makefile
    assert "$(MODEL_DIR).evaluation.json $(EVALUATION_CACHE)" in makefile  # make report's mv


def test_the_committed_evaluation_matches_this_checkout():
    # What keeps `make run`'s first training quick: a change to the CV's code, data, parameters or
    # libraries makes the committed figures stale, and `make report` saves fresh ones.
    parts = data.split(data.load_dataset())
    current = cache.fingerprint(parts.X_train.to_numpy(), parts.y_train.to_numpy())
    reused, reason = cache.lookup(cache.SHIPPED, current)
    assert reused is not None, f"{reason}: run `make report` and commit docs/report/"
    assert set(reused) == set(crossval.MODELS) == {crossval.SERVED_NAME, pipeline.PLAIN_LGBM_NAME}


def test_verify_refits_and_names_every_fold_score_that_differs(tmp_path, monkeypatch):
    import model.crossval

    path = tmp_path / "evaluation.json"
    cache.save(path, cache.fingerprint(ROWS, TARGET), figures(0.5))
    monkeypatch.setattr(model.crossval, "cross_validate", lambda X, y, **_: figures(0.5))
    assert cache.verify(path, ROWS, TARGET, workers=1) == []
    changed = figures(0.5)
    changed[crossval.SERVED_NAME]["cv_rmse"] = evaluate.CVResult((0.5, 0.6, 0.71))
    monkeypatch.setattr(model.crossval, "cross_validate", lambda X, y, **_: changed)
    assert cache.verify(path, ROWS, TARGET, workers=1) == [
        f"{crossval.SERVED_NAME} cv_rmse: saved [0.5, 0.6, 0.7], computed [0.5, 0.6, 0.71]"
    ]
