"""The estimators: the served model and the baselines it is compared against."""

from __future__ import annotations

from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import LinearRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from model.data import RANDOM_STATE


def build_model() -> HistGradientBoostingRegressor:
    """The served model: gradient-boosted trees with early stopping.

    Tuned on the training split only (the test split is never looked at while choosing):
    a smaller learning rate with more, larger trees; early stopping on an internal 10%
    validation split picks the number of trees.
    """
    return HistGradientBoostingRegressor(
        max_iter=1000,
        learning_rate=0.05,
        max_leaf_nodes=63,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=50,
        random_state=RANDOM_STATE,
    )


def build_linear_baseline() -> Pipeline:
    """What the project this replaces shipped: ordinary least squares on raw features."""
    return Pipeline([("scale", StandardScaler()), ("ols", LinearRegression())])
