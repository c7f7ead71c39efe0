"""Metrics and the quality gate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import KFold

from model.data import RANDOM_STATE
from model.features import cell_ids
from model.scores import FoldScores

CV_FOLDS = 5
# The grid the spatial CV groups by: 1 degree (about 111 km by 90 km) is the audit's, and wider
# than any neighbourhood the features average over (16 block groups span a few km in a city).
SPATIAL_CELL_DEGREES = 1.0

# How every figure in metadata.json, the report and bench/results.md is obtained; metadata.json
# records it under `evaluation` beside the CV figures of each model.
PROTOCOL: dict[str, Any] = {
    "selection": "not all by CV: the feature set, neighbourhood k = (4, 8, 16) and the 600 x 31 forest "
    "were chosen in issue 6 (performance) with a test-RMSE column; the distance columns, the spatially "
    "out-of-fold copy, its 0.5 degree cells and weight 0.5 in issue 16, and the 10 km beyond which the "
    "prices are missing in issue 23, by CV on the training rows, on the same folds these figures report "
    "(not nested); docs/model.md lists every choice and how it was made",
    "test_split": "scored once, by the final model, after training and CV; nothing in the training run "
    "reads it before, and its figure is reported and gated (a last check), never used to choose",
    "random_cv": f"KFold({CV_FOLDS}, shuffle=True, random_state={RANDOM_STATE}) over the training rows",
    "spatial_cv": f"GroupKFold({CV_FOLDS}) over the training rows, grouped by {SPATIAL_CELL_DEGREES:g} "
    "degree latitude x longitude cells: every held-out place lies in cells the fold never saw",
    "neighbourhood_features": "target-derived, so refitted inside every fold from that fold's training "
    "rows only; the held-out rows look them up as the served model does",
}

# The last check on the test split, an absolute floor under the quality gate against the baseline
# (model/quality.py). Derived from the random-split CV on the training rows, not from the test split:
# mean + 2 standard deviations of the served design's folds (0.403 + 2 x 0.013 = 0.428, ddof=1),
# rounded up. It fails anything near the earlier models (tuned HGB 0.444, linear 0.746 on the test
# split) but not plain LightGBM (0.427): telling whether the features still pay is quality.py's job.
DEFAULT_MAX_TEST_RMSE = 0.43
PARITY_TOLERANCE = 1e-4  # the served path must give the trained model's predictions


@dataclass(frozen=True)
class HoldoutMetrics:
    """Errors on the test split, in units of $100k."""

    test_rmse: float
    test_mae: float
    test_r2: float


class QualityGateError(Exception):
    """The trained model is worse than the bound it must meet."""


class ParityError(Exception):
    """The exported, served model does not predict what the trained model predicts."""


def check_parity(reference: np.ndarray, served: np.ndarray, tolerance: float = PARITY_TOLERANCE) -> float:
    """The largest difference between served and reference predictions.

    Raises:
        ParityError: It exceeds the tolerance, or a served prediction is not finite.
    """
    gap = float(np.max(np.abs(np.asarray(served) - np.asarray(reference))))
    if not np.isfinite(gap) or gap > tolerance:
        raise ParityError(f"served predictions differ from the trained model by {gap:.3g} (> {tolerance:g})")
    return gap


def holdout_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> HoldoutMetrics:
    """RMSE, MAE and R² of predictions on the test split."""
    return HoldoutMetrics(
        test_rmse=float(np.sqrt(mean_squared_error(y_true, y_pred))),
        test_mae=float(mean_absolute_error(y_true, y_pred)),
        test_r2=float(r2_score(y_true, y_pred)),
    )


# RMSE of each held-out fold with their mean, spread (ddof=1) and standard error: the same class the
# gates read metadata.json's folds into, so a figure is computed one way everywhere.
CVResult = FoldScores


Folds = list[tuple[np.ndarray, np.ndarray]]


def random_folds(n_rows: int) -> Folds:
    """KFold(5, shuffle=True, random_state=42) over n_rows: what a new block group near known ones sees."""
    return list(KFold(n_splits=CV_FOLDS, shuffle=True, random_state=RANDOM_STATE).split(np.zeros(n_rows)))


def spatial_cells(X: np.ndarray) -> np.ndarray:
    """The SPATIAL_CELL_DEGREES latitude/longitude cell of each raw row, as one integer id."""
    return cell_ids(np.asarray(X, dtype=np.float64), SPATIAL_CELL_DEGREES)


def spatial_folds(X: np.ndarray) -> Folds:
    """GroupKFold(5) over the rows' geographic cells: every held-out place is unseen in training.

    A held-out row's neighbourhood then lies in the cells around it, as for a town the data
    never covered; scikit-learn balances the folds by row count, with no randomness.
    """
    from sklearn.model_selection import GroupKFold

    return list(GroupKFold(n_splits=CV_FOLDS).split(np.zeros(len(X)), groups=spatial_cells(X)))


def cross_validated_rmse(fit: Callable[[np.ndarray, np.ndarray], Any], X, y, folds: Folds) -> CVResult:
    """RMSE of a model refitted on each fold's training part and scored on its held-out part.

    Args:
        fit: Fits a fresh model on (X, y) and returns something with `predict(X)`; every fold
            refits everything, the neighbourhood features included, so no fold ever sees its
            own targets.
        X: Raw rows in schema order; in this project the training split's only.
        y: Targets.
        folds: (fit rows, held-out rows) index pairs, from `random_folds` or `spatial_folds`.
    """
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64)
    return CVResult(tuple(fold_rmse(fit, X, y, fit_rows, held_rows) for fit_rows, held_rows in folds))


def fold_rmse(
    fit: Callable[[np.ndarray, np.ndarray], Any],
    X: np.ndarray,
    y: np.ndarray,
    fit_rows: np.ndarray,
    held_rows: np.ndarray,
) -> float:
    """One fold of `cross_validated_rmse`: refit on fit_rows, RMSE on held_rows.

    A fold depends on nothing but its arguments, so model/crossval.py runs the folds in separate
    processes and gets the very scores the loop above gets.
    """
    model = fit(X[fit_rows], y[fit_rows])
    return float(np.sqrt(mean_squared_error(y[held_rows], model.predict(X[held_rows]))))


def check_quality_gate(test_rmse: float, max_test_rmse: float) -> None:
    """Refuse a model whose holdout RMSE exceeds the bound.

    Raises:
        QualityGateError: With a one-line reason naming both numbers.
    """
    if not np.isfinite(test_rmse) or test_rmse > max_test_rmse:
        raise QualityGateError(f"quality gate failed: test RMSE {test_rmse:.4f} > bound {max_test_rmse:.4f}")
