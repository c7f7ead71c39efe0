"""The quality gate against plain LightGBM (model/quality.py) and the fold figures both gates read.

The figures are per-fold RMSEs as a full training run records them (the served design and plain
LightGBM on the same folds); a design that no longer earns its features is made by changing them.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from model import pipeline, quality, scores, train
from model.artifact import METADATA_FILE
from model.evaluate import CVResult
from model.scores import RANDOM_CV, SPATIAL_CV, FoldScores

PLAIN = pipeline.PLAIN_LGBM_NAME
# A full training run of issue 16's design (python -m model.train, 2026-12-04, before issue 23's
# NEAR_KM): both models on the same folds.
SERVED_FOLDS = {
    RANDOM_CV: FoldScores((0.41798, 0.39571, 0.39505, 0.40832, 0.39195)),
    SPATIAL_CV: FoldScores((0.73416, 0.75485, 0.63074, 0.58209, 0.45914)),
}
PLAIN_FOLDS = {
    RANDOM_CV: FoldScores((0.45817, 0.43967, 0.43535, 0.44838, 0.43195)),
    SPATIAL_CV: FoldScores((0.69700, 0.85563, 0.54022, 0.50994, 0.51473)),
}
# The design served before issue 16, on the same spatial folds (bench/results.md): it trails plain
# LightGBM by 0.093 on unseen places.
BEFORE_ISSUE_16_SPATIAL = FoldScores((0.834, 0.835, 0.750, 0.621, 0.543))


def by_figure(checks: list[quality.Check]) -> dict[str, quality.Check]:
    return {c.figure: c for c in checks}


def test_fold_spread_is_the_sample_standard_deviation() -> None:
    folds = FoldScores((0.40, 0.41, 0.39, 0.42, 0.38))
    assert folds.std == pytest.approx(float(np.std(folds.folds, ddof=1)))
    assert folds.std > float(np.std(folds.folds))  # not numpy's default ddof=0
    assert folds.standard_error == pytest.approx(folds.std / math.sqrt(5))
    assert CVResult is FoldScores  # the training run and the gates compute a spread one way


def test_the_served_design_of_a_full_run_passes_against_plain_lightgbm() -> None:
    checks = by_figure(quality.check(SERVED_FOLDS, PLAIN_FOLDS))
    assert all(c.passed for c in checks.values())
    assert checks[RANDOM_CV.key].difference == pytest.approx(-0.0409, abs=1e-4)
    assert checks[SPATIAL_CV.key].difference == pytest.approx(0.0087, abs=1e-4)


def test_a_design_with_only_the_8_raw_features_fails_the_quality_gate() -> None:
    # A served design reduced to the 8 raw inputs is a plain LightGBM: on the same folds it scores
    # what the baseline scores, so it gains nothing on the random split.
    checks = by_figure(quality.check(PLAIN_FOLDS, PLAIN_FOLDS))
    assert not checks[RANDOM_CV.key].passed
    with pytest.raises(quality.BaselineGateError, match=r"random-split CV RMSE: served 0\.4427 .* FAILED"):
        quality.enforce(list(checks.values()), PLAIN)


def test_a_design_that_misleads_on_unseen_places_fails_the_quality_gate() -> None:
    served = {**SERVED_FOLDS, SPATIAL_CV: BEFORE_ISSUE_16_SPATIAL}
    checks = by_figure(quality.check(served, PLAIN_FOLDS))
    assert checks[RANDOM_CV.key].passed
    assert not checks[SPATIAL_CV.key].passed
    assert checks[SPATIAL_CV.key].difference == pytest.approx(0.093, abs=1e-3)


@pytest.mark.parametrize(
    ("figure", "shift", "passes"),
    [
        (RANDOM_CV, -quality.RANDOM_CV_MIN_GAIN - 1e-6, True),
        (RANDOM_CV, -quality.RANDOM_CV_MIN_GAIN + 1e-3, False),
        (SPATIAL_CV, quality.SPATIAL_CV_MAX_LOSS - 1e-6, True),
        (SPATIAL_CV, quality.SPATIAL_CV_MAX_LOSS + 1e-3, False),
    ],
)
def test_the_declared_margins_are_the_bounds(figure, shift, passes) -> None:
    served = dict(SERVED_FOLDS)
    served[figure] = FoldScores(tuple(v + shift for v in PLAIN_FOLDS[figure].folds))
    assert by_figure(quality.check(served, PLAIN_FOLDS))[figure.key].passed is passes


def test_a_missing_figure_is_an_error_not_a_pass() -> None:
    with pytest.raises(ValueError, match="spatial CV"):
        quality.check({RANDOM_CV: SERVED_FOLDS[RANDOM_CV]}, PLAIN_FOLDS)


def test_training_fails_before_fitting_or_writing_when_the_design_does_not_beat_the_baseline(
    tmp_path, monkeypatch
) -> None:
    # CV figures of a design that is plain LightGBM in disguise; the final fit must never start.
    monkeypatch.setattr(
        train,
        "cross_validate",
        lambda X, y, **_: {
            train.SERVED_NAME: {f.key: CVResult(PLAIN_FOLDS[f].folds) for f in scores.CV_FIGURES},
            PLAIN: {f.key: CVResult(PLAIN_FOLDS[f].folds) for f in scores.CV_FIGURES},
        },
    )
    monkeypatch.setattr(pipeline, "fit_model", lambda *a, **k: pytest.fail("fitted after a failed gate"))
    out = tmp_path / "artifacts"
    with pytest.raises(quality.BaselineGateError, match="FAILED"):
        train.train(out, max_test_rmse=1.0)
    assert not out.exists()


def test_the_gate_is_recorded_and_re_judged_from_metadata() -> None:
    metadata = {
        "estimator": train.SERVED_NAME,
        "evaluation": {
            "models": {
                name: {f"{f.key}_folds": list(folds[f].folds) for f in scores.CV_FIGURES}
                for name, folds in ((train.SERVED_NAME, SERVED_FOLDS), (PLAIN, PLAIN_FOLDS))
            }
        },
    }
    checks = quality.from_metadata(metadata, PLAIN)
    assert checks == quality.check(SERVED_FOLDS, PLAIN_FOLDS)
    recorded = json.loads(json.dumps(quality.record(checks, PLAIN)))  # as metadata.json holds it
    assert recorded["random_cv_min_gain"] == quality.RANDOM_CV_MIN_GAIN
    assert recorded["spatial_cv_max_loss"] == quality.SPATIAL_CV_MAX_LOSS
    assert quality.verdict_lines(recorded) == [c.line(PLAIN) for c in checks]


def test_make_train_prints_the_gates_verdicts_with_the_figures(
    monkeypatch, capsys, trained_model_dir
) -> None:
    meta = json.loads((trained_model_dir / METADATA_FILE).read_text())
    meta["quality_gate"] |= quality.record(quality.check(SERVED_FOLDS, PLAIN_FOLDS), PLAIN)
    meta["metrics"] |= {"cv_rmse_mean": SERVED_FOLDS[RANDOM_CV].mean, "spatial_cv_rmse_mean": 0.6322}
    monkeypatch.setattr(train, "train", lambda *a, **k: meta)
    assert train.main(["--out", "unused"]) == 0
    printed = capsys.readouterr().out
    assert f"random-split CV RMSE: served 0.4018 vs {PLAIN} 0.4427 (difference -0.0409" in printed
    assert f"spatial CV RMSE (unseen places): served 0.6322 vs {PLAIN} 0.6235 (difference +0.0087" in printed
    assert (
        f"test RMSE {meta['metrics']['test_rmse']:.4f} (last check) within the bound 0.4300: passed"
        in printed
    )


def test_a_run_without_cv_says_the_baseline_gate_was_not_checked(trained_model_dir) -> None:
    meta = json.loads((trained_model_dir / METADATA_FILE).read_text())
    assert meta["quality_gate"]["checks"] is None
    assert meta["quality_gate"]["baseline"] == PLAIN
    (line,) = [v for v in train.gate_verdicts(meta) if PLAIN in v]
    assert "NOT CHECKED" in line
