"""The loaded model as the service sees it: a version, metadata, and predict on a float matrix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from model.artifact import load_artifact
from model.schema import FEATURE_NAMES, TARGET_UNIT_USD, example_record


class Predictor:
    """Wraps the fitted estimator; loaded once per worker at start-up."""

    def __init__(self, estimator: Any, metadata: dict[str, Any]) -> None:
        self._estimator = estimator
        self.metadata = metadata
        self.version: str = str(metadata["model_version"])

    @classmethod
    def load(cls, model_dir: Path) -> Predictor:
        """Load and verify the artifact.

        Raises:
            ArtifactError: Missing, corrupt, or for another schema.
        """
        artifact = load_artifact(model_dir)
        return cls(artifact.estimator, artifact.metadata)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict for an (n, 8) float64 matrix in schema order; values in units of $100k."""
        return np.asarray(self._estimator.predict(X), dtype=np.float64)

    def self_test(self) -> bool:
        """Whether the model gives a finite prediction for a known-good record."""
        row = np.array([[example_record()[name] for name in FEATURE_NAMES]])
        try:
            value = float(self.predict(row)[0])
        except (ValueError, TypeError, AttributeError):
            return False
        return math.isfinite(value)


def to_usd(predictions: np.ndarray) -> list[float]:
    """Predictions in $100k -> dollars, rounded to cents."""
    return [round(float(p) * TARGET_UNIT_USD, 2) for p in predictions]
