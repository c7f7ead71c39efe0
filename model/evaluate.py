"""Metrics and the quality gate."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import RegressorMixin, clone
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import KFold, cross_val_score

from model.data import RANDOM_STATE

DEFAULT_MAX_TEST_RMSE = 0.50


@dataclass(frozen=True)
class HoldoutMetrics:
    """Errors on the test split, in units of $100k."""

    test_rmse: float
    test_mae: float
    test_r2: float


class QualityGateError(Exception):
    """The trained model is worse than the bound it must meet."""


def holdout_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> HoldoutMetrics:
    """RMSE, MAE and R² of predictions on the test split."""
    return HoldoutMetrics(
        test_rmse=float(np.sqrt(mean_squared_error(y_true, y_pred))),
        test_mae=float(mean_absolute_error(y_true, y_pred)),
        test_r2=float(r2_score(y_true, y_pred)),
    )


def cross_validated_rmse(estimator: RegressorMixin, X, y) -> tuple[float, float]:
    """Mean and standard deviation of RMSE over KFold(5, shuffle=True, random_state=42)."""
    folds = KFold(n_splits=5, shuffle=True, random_state=RANDOM_STATE)
    scores = cross_val_score(clone(estimator), X, y, cv=folds, scoring="neg_root_mean_squared_error")
    return float(-scores.mean()), float(scores.std())


def check_quality_gate(test_rmse: float, max_test_rmse: float) -> None:
    """Refuse a model whose holdout RMSE exceeds the bound.

    Raises:
        QualityGateError: With a one-line reason naming both numbers.
    """
    if not np.isfinite(test_rmse) or test_rmse > max_test_rmse:
        raise QualityGateError(f"quality gate failed: test RMSE {test_rmse:.4f} > bound {max_test_rmse:.4f}")
