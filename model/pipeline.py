"""The estimators: the served model (features + LightGBM) and the baselines it is compared to."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model.data import RANDOM_STATE
from model.features import FeatureTransformer

# Chosen by a holdout screen and 5-fold CV (bench/results.md lists every candidate): 600 trees of
# 31 leaves come within 0.002 RMSE of 1500 trees of 63 leaves with a fifth of the node visits per
# prediction, which keeps a batch of 1,000 well inside 30 ms; half the columns per tree pays with
# 33 correlated columns.
LGBM_PARAMS: dict[str, Any] = {
    "n_estimators": 600,
    "learning_rate": 0.06,
    "num_leaves": 31,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.5,
    "random_state": RANDOM_STATE,
    # One thread and LightGBM's deterministic mode: the same trees on any machine and core count.
    "n_jobs": 1,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}


@dataclass(frozen=True)
class FittedModel:
    """The fitted feature transformer and booster, before export."""

    features: FeatureTransformer
    booster: Any  # lightgbm.LGBMRegressor
    fit_seconds: float

    def predict(self, X: np.ndarray) -> np.ndarray:
        """LightGBM's own predictions for raw rows: the reference the served path must match."""
        return self.booster.predict(self.features.transform(X))


def fit_model(X: np.ndarray, y: np.ndarray) -> FittedModel:
    """Fit the features (neighbourhood prices out of fold) and the booster on training rows."""
    import lightgbm as lgb

    started = time.perf_counter()
    features = FeatureTransformer()
    F = features.fit_transform(np.asarray(X, dtype=np.float64), np.asarray(y, dtype=np.float64))
    booster = lgb.LGBMRegressor(**LGBM_PARAMS).fit(F, y)
    return FittedModel(features, booster, time.perf_counter() - started)


def build_linear_baseline() -> Pipeline:
    """What the project this replaces shipped: ordinary least squares on raw features."""
    return Pipeline([("scale", StandardScaler()), ("ols", LinearRegression())])


def build_previous_model() -> HistGradientBoostingRegressor:
    """This project's first model: tuned gradient-boosted trees on the 8 raw features."""
    return HistGradientBoostingRegressor(
        max_iter=1000,
        learning_rate=0.05,
        max_leaf_nodes=63,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=50,
        random_state=RANDOM_STATE,
    )
