"""The cross-validation training runs: which models, which folds, and the folds spread over the cores.

Two models (the served design and the plain LightGBM) are scored on two fold sets (random-split and
spatial, 5 folds each): twenty independent fits on the training rows only. Every fold refits
everything, so the served design's neighbourhood prices come from that fold's training rows only.
model/parallel.py runs the twenty fits over the machine's cores; each fit is `evaluate.fold_rmse`,
the body of `evaluate.cross_validated_rmse`'s loop, so a parallel run scores what a serial one does.

model/cache.py fingerprints this module and every model module it imports: a change to any of them
(a model, a parameter, a fold) makes a cached evaluation stale.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from model import evaluate, parallel, pipeline

SERVED_NAME = "LightGBM + geo features"  # short: the report puts it in figure titles
FOLD_SETS = ("cv_rmse", "spatial_cv_rmse")  # metadata's keys: random-split, then spatial


def fit_plain_lightgbm(X: np.ndarray, y: np.ndarray) -> Any:
    """A fresh plain LightGBM fitted on (X, y) (a module-level name, so a worker process can import it)."""
    return pipeline.build_plain_lightgbm().fit(X, y)


# Each model's fit for one fold: fresh, on the fold's training rows only.
MODELS: dict[str, Callable[[np.ndarray, np.ndarray], Any]] = {
    SERVED_NAME: pipeline.fit_cv_model,
    pipeline.PLAIN_LGBM_NAME: fit_plain_lightgbm,
}


def folds(X_train: np.ndarray) -> dict[str, evaluate.Folds]:
    """The two fold sets, by metadata key."""
    return {
        "cv_rmse": evaluate.random_folds(len(X_train)),
        "spatial_cv_rmse": evaluate.spatial_folds(X_train),
    }


def fit_count(n_models: int = len(MODELS)) -> int:
    """How many fits a cross-validation runs (for the progress bar and the docs)."""
    return n_models * len(FOLD_SETS) * evaluate.CV_FOLDS


def cross_validate(
    X_train: np.ndarray,
    y_train: np.ndarray,
    *,
    workers: int = 1,
    on_fold: Callable[[int, int], None] | None = None,
) -> dict[str, dict[str, evaluate.CVResult]]:
    """Random-split and spatial CV of every model in MODELS, on the training rows only.

    Args:
        X_train: Raw training rows in schema order.
        y_train: Their targets.
        workers: Most fits running at once (model/parallel.py); 1 runs them here, one by one.
        on_fold: Called with (fits finished, fits in all) after each fit.

    Returns:
        {model name: {"cv_rmse": CVResult, "spatial_cv_rmse": CVResult}}, folds in fold order
        whatever order they finished in.
    """
    X = np.asarray(X_train, dtype=np.float64)
    y = np.asarray(y_train, dtype=np.float64)
    fold_sets = folds(X)
    keys = [(name, key, i) for name in MODELS for key in FOLD_SETS for i in range(len(fold_sets[key]))]
    tasks: list[parallel.Task] = [
        (evaluate.fold_rmse, (MODELS[name], X, y, *fold_sets[key][i])) for name, key, i in keys
    ]
    scores = dict(zip(keys, parallel.run_all(tasks, workers, on_fold), strict=True))
    return {
        name: {
            key: evaluate.CVResult(tuple(scores[name, key, i] for i in range(len(fold_sets[key]))))
            for key in FOLD_SETS
        }
        for name in MODELS
    }
