"""The loaded model as the service sees it: a version, metadata, and predict on a float matrix."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from model import runtime
from model.artifact import ArtifactError, pin, verify_artifact
from model.schema import FEATURE_NAMES, TARGET_UNIT_USD, example_record


class LoadedModel:
    """The verified artifact's compiled model; loaded once per worker at start-up."""

    def __init__(self, model: runtime.CompiledModel, metadata: dict[str, Any], folder: Path) -> None:
        self._model = model
        self.metadata = metadata
        self.version: str = str(metadata["model_version"])
        # the one published folder read at start-up; the report's files are served from it too
        self.folder = folder

    @classmethod
    def load(cls, model_dir: Path) -> LoadedModel:
        """Verify every file of the artifact against its recorded hash, then load it.

        Raises:
            ArtifactError: Missing, corrupt, for another schema, or built for another platform.
        """
        # Resolved once: a publish during start-up cannot give metadata of one model, arrays of another.
        folder = pin(model_dir)
        metadata = verify_artifact(folder)
        try:
            model = runtime.CompiledModel(folder)
        except runtime.InvalidForest as exc:
            # hashes match, yet the arrays would send forest.so outside them: never walk them
            raise ArtifactError(f"the forest in {folder} is unsafe to evaluate: {exc}; retrain") from None
        except (OSError, ValueError, KeyError) as exc:
            # e.g. forest.so compiled for another CPU architecture than this one
            raise ArtifactError(f"the model in {folder} cannot be loaded here ({exc}); retrain") from None
        return cls(model, metadata, folder)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predict for an (n, 8) float64 matrix in schema order; values in units of $100k."""
        if len(X) == 1:
            # the one-row path computes features on plain floats: no numpy call per feature
            return np.array([self._model.predict_one(X[0].tolist())])
        return self._model.predict_batch(X)

    def self_test(self) -> bool:
        """Whether the model gives a finite prediction for a known-good record."""
        row = [example_record()[name] for name in FEATURE_NAMES]
        try:
            value = float(self._model.predict_one(row))
        except (ValueError, TypeError, OSError):
            return False
        return math.isfinite(value)


def to_usd(predictions: np.ndarray) -> list[float]:
    """Predictions in $100k -> dollars, rounded to cents."""
    return [round(float(p) * TARGET_UNIT_USD, 2) for p in predictions]
