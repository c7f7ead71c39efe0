"""The figures a model is judged on, as metadata.json records them: one reading for both gates.

The promotion gate (`model/gate.py`) and the quality gate (`model/quality.py`) judge a model on the
same three figures, declared here once:

* the random-split CV RMSE (a new block group among known ones),
* the spatial CV RMSE (a place the data never covered: what the engineered features must not spoil),
* the test RMSE, scored once at the end of a training run: a last check, with no folds of its own.

Every model in a training run is scored on the same folds, so two models are compared fold by fold
(paired), and the spread that matters is the spread of the per-fold differences, not the fold-to-fold
spread of either model (the spatial folds differ by region far more than the models do).
Standard library only: the promotion gate runs in CI before anything heavy is installed.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    """One figure a model is judged on.

    Attributes:
        key: Its stem in metadata.json: `metrics[key]`, or `evaluation.models[name][key + "_folds"]`.
        label: How reports name it.
        protocol_key: Where metadata.json's `evaluation` describes how it is measured, if anywhere.
    """

    key: str
    label: str
    protocol_key: str | None


RANDOM_CV = Figure("cv_rmse", "random-split CV RMSE", "random_cv")
SPATIAL_CV = Figure("spatial_cv_rmse", "spatial CV RMSE (unseen places)", "spatial_cv")
TEST = Figure("test_rmse", "test RMSE (last check)", "test_split")
CV_FIGURES = (RANDOM_CV, SPATIAL_CV)


@dataclass(frozen=True)
class FoldScores:
    """RMSE of each held-out fold ($100k), with their mean, spread and standard error."""

    folds: tuple[float, ...]

    @property
    def mean(self) -> float:
        """The mean over the folds."""
        return statistics.fmean(self.folds)

    @property
    def std(self) -> float:
        """The sample standard deviation over the folds (ddof=1: five folds are a sample of the
        splits the data could have had; ddof=0 would understate their spread by about 11%)."""
        return statistics.stdev(self.folds)

    @property
    def standard_error(self) -> float:
        """The standard error of the mean: std / sqrt(number of folds)."""
        return self.std / math.sqrt(len(self.folds))


@dataclass(frozen=True)
class Difference:
    """`a - b` fold by fold for two models scored on the same folds.

    Attributes:
        mean: The mean per-fold difference (= a.mean - b.mean).
        standard_error: The sample standard deviation of the per-fold differences / sqrt(folds).
        folds: How many folds.
    """

    mean: float
    standard_error: float
    folds: int


def paired_difference(a: FoldScores, b: FoldScores) -> Difference:
    """Fold-by-fold difference of two models scored on the same folds.

    Raises:
        ValueError: The two were not scored on the same number of folds.
    """
    if len(a.folds) != len(b.folds):
        raise ValueError(f"{len(a.folds)} folds against {len(b.folds)}")
    diffs = FoldScores(tuple(x - y for x, y in zip(a.folds, b.folds, strict=True)))
    return Difference(diffs.mean, diffs.standard_error, len(diffs.folds))


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def fold_scores(metadata: dict[str, Any], figure: Figure, model: str | None = None) -> FoldScores | None:
    """A model's per-fold RMSEs for a CV figure, from metadata.json's `evaluation.models`.

    Args:
        metadata: A metadata.json document.
        figure: RANDOM_CV or SPATIAL_CV.
        model: The model's name in `evaluation.models`; default the served one (`estimator`).

    Returns:
        The folds, or None when the metadata records no such folds (a `--no-cv` run, an older
        artifact) or records something that is not at least two finite numbers.
    """
    models = (metadata.get("evaluation") or {}).get("models") or {}
    entry = models.get(model if model is not None else metadata.get("estimator")) or {}
    folds = entry.get(f"{figure.key}_folds") if isinstance(entry, dict) else None
    if not isinstance(folds, list) or len(folds) < 2 or not all(_finite_number(f) for f in folds):
        return None
    return FoldScores(tuple(float(f) for f in folds))


def holdout_rmse(metadata: dict[str, Any]) -> float | None:
    """The served model's test RMSE from metadata.json's `metrics`, or None when absent."""
    value = (metadata.get("metrics") or {}).get(TEST.key)
    return float(value) if _finite_number(value) else None


def protocol(metadata: dict[str, Any], figure: Figure) -> str | None:
    """How metadata.json says a figure was measured, if it says."""
    if figure.protocol_key is None:
        return None
    value = (metadata.get("evaluation") or {}).get(figure.protocol_key)
    return value if isinstance(value, str) else None
