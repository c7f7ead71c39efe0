"""The lean predictor the service loads: numpy, ctypes and the artifact, nothing else.

No scipy, pandas, scikit-learn or LightGBM is imported here (a test proves it): the features
come from `features.FeatureTransformer` (numpy plus a precomputed lookup table) and the trees
from `forest.so`, the evaluator compiled when the artifact was written.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.features import N_FEATURES, N_RAW, FeatureTransformer

# The files model/forest.py writes (the training side imports these names from here).
NODES_FILE = "forest_nodes.npy"
ROOTS_FILE = "forest_roots.npy"
DEPTHS_FILE = "forest_depths.npy"
LIBRARY_FILE = "forest.so"


class _Forest(ctypes.Structure):
    # Mirrors `Forest` in treeeval.c.
    _fields_ = (
        ("nodes", ctypes.c_void_p),
        ("roots", ctypes.c_void_p),
        ("depths", ctypes.c_void_p),
        ("n_trees", ctypes.c_int32),
        ("n_features", ctypes.c_int32),
        ("base", ctypes.c_double),
    )


class InvalidRow(ValueError):
    """A row that is not 8 numbers."""


class CompiledModel:
    """Predicts house values (units of $100k) from raw rows in schema order.

    Load once at start-up and share: it holds no per-call state, so threads may call it at once.
    """

    def __init__(self, model_dir: Path) -> None:
        """Load the artifact in `model_dir`.

        Raises:
            OSError: forest.so cannot be loaded (built for another platform: retrain in the image).
            ValueError: The arrays do not fit together.
        """
        model_dir = Path(model_dir)
        self.features = FeatureTransformer.load(model_dir)
        # Keep references: the C side only holds raw pointers into these arrays.
        self._nodes = np.load(model_dir / NODES_FILE, allow_pickle=False)
        self._roots = np.ascontiguousarray(np.load(model_dir / ROOTS_FILE), dtype=np.int32)
        self._depths = np.ascontiguousarray(np.load(model_dir / DEPTHS_FILE), dtype=np.int32)
        if self._nodes.dtype.itemsize != 32 or len(self._roots) != len(self._depths):
            raise ValueError(f"{model_dir} holds an inconsistent forest; retrain")
        features_used = self._nodes["feature"]
        if len(features_used) and int(features_used.max()) >= N_FEATURES:
            raise ValueError(f"{model_dir} was trained on more than {N_FEATURES} features; retrain")
        self._forest = _Forest(
            self._nodes.ctypes.data,
            self._roots.ctypes.data,
            self._depths.ctypes.data,
            len(self._roots),
            N_FEATURES,
            0.0,
        )
        self._forest_addr = ctypes.addressof(self._forest)
        lib = ctypes.CDLL(str((model_dir / LIBRARY_FILE).resolve()))
        self._row_fn = lib.forest_predict_row
        self._row_fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p)
        self._row_fn.restype = ctypes.c_double
        self._batch_fn = lib.forest_predict_batch
        self._batch_fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)
        self._batch_fn.restype = None
        self._row_type = ctypes.c_double * N_FEATURES
        self._lib = lib

    def predict_one(self, row: Sequence[float]) -> float:
        """One prediction from 8 raw values (MedInc, ..., Latitude, Longitude).

        Raises:
            InvalidRow: Not exactly 8 values.
        """
        if len(row) != N_RAW:
            raise InvalidRow(f"expected {N_RAW} values, got {len(row)}")
        # A fresh ctypes buffer per call (~1 us) keeps concurrent callers from sharing one.
        buf = self._row_type(*self.features.transform_row(row))
        return self._row_fn(self._forest_addr, buf)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """`predict_batch` under the estimator's name, so the report measures what is served."""
        return self.predict_batch(X)

    def predict_batch(self, X: np.ndarray) -> np.ndarray:
        """Predictions for an (n, 8) array of raw rows.

        Raises:
            InvalidRow: X is not two-dimensional with 8 columns.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != N_RAW:
            raise InvalidRow(f"expected shape (n, {N_RAW}), got {X.shape}")
        F = self.features.transform(X)
        out = np.empty(len(F))
        self._batch_fn(self._forest_addr, F.ctypes.data, len(F), out.ctypes.data)
        return out
