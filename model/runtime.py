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

# One node as `Node` in treeeval.c lays it out (little-endian, 32 bytes): model/forest.py writes
# this dtype and the loader refuses any other, since forest.so reads the bytes blindly.
NODE_DTYPE = np.dtype(
    [
        ("threshold", "<f8"),
        ("value", "<f8"),
        ("feature", "<i4"),
        ("left", "<i4"),
        ("right", "<i4"),
        ("nan_right", "<i4"),
    ],
    align=True,
)
INDEX_DTYPE = np.dtype("<i4")  # int32_t roots[] and depths[] in treeeval.c


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


class InvalidForest(ValueError):
    """The forest's arrays are not what forest.so can walk safely; the message names the problem."""


def _load_array(path: Path, dtype: np.dtype) -> np.ndarray:
    """A one-dimensional, C-contiguous, aligned array of exactly `dtype` from an .npy file.

    Raises:
        InvalidForest: Another dtype, shape or layout (no silent conversion: a wrong dtype means
            the file was not written by model/forest.py).
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidForest(f"{path.name} is not a readable .npy array ({exc})") from None
    if array.dtype != dtype:
        raise InvalidForest(f"{path.name} has dtype {array.dtype}, forest.so expects {dtype}")
    if array.ndim != 1 or not array.flags.c_contiguous or not array.flags.aligned:
        raise InvalidForest(f"{path.name} is not a flat contiguous array (shape {array.shape})")
    return array


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def check_forest(nodes: np.ndarray, roots: np.ndarray, depths: np.ndarray, n_features: int) -> None:
    """Prove that forest.so's walk stays inside the arrays and ends on the leaves.

    treeeval.c indexes with these numbers unchecked, so every index it follows must be in range:
    roots and children in the node array, features in the row, `nan_right` 0 or 1 (it indexes the
    two children). Beyond memory safety, each tree must be a tree (no node reached twice, no cycle,
    leaves pointing at themselves) whose recorded depth is its deepest leaf, with finite
    thresholds and leaf values, so the fixed-length walk returns what LightGBM would.

    Raises:
        InvalidForest: The first problem found, naming the array, the node and the value.
    """
    n_nodes, n_trees = len(nodes), len(roots)
    if n_nodes == 0 or n_trees == 0:
        raise InvalidForest(f"the forest is empty ({n_trees} trees, {n_nodes} nodes)")
    if len(depths) != n_trees:
        raise InvalidForest(f"{n_trees} roots but {len(depths)} depths")
    for name, values in (("root", roots), ("left child", nodes["left"]), ("right child", nodes["right"])):
        bad = (values < 0) | (values >= n_nodes)
        if np.any(bad):
            at = _first(bad)
            raise InvalidForest(f"{name} {int(values[at])} at index {at} is outside the {n_nodes} nodes")
    bad = (nodes["feature"] < 0) | (nodes["feature"] >= n_features)
    if np.any(bad):
        at = _first(bad)
        raise InvalidForest(
            f"node {at} reads feature {int(nodes['feature'][at])}; the model has {n_features}"
        )
    bad = (nodes["nan_right"] != 0) & (nodes["nan_right"] != 1)
    if np.any(bad):
        at = _first(bad)
        raise InvalidForest(f"node {at} has nan_right {int(nodes['nan_right'][at])}; it must be 0 or 1")
    index = np.arange(n_nodes, dtype=np.int64)
    leaf = (nodes["left"] == index) & (nodes["right"] == index)
    bad = ~leaf & ~np.isfinite(nodes["threshold"])
    if np.any(bad):
        at = _first(bad)
        raise InvalidForest(f"split node {at} has threshold {float(nodes['threshold'][at])}")
    bad = ~np.isfinite(nodes["value"])
    if np.any(bad):
        at = _first(bad)
        raise InvalidForest(f"node {at} has value {float(nodes['value'][at])}")
    # Walk all trees level by level: each split node's children get the next level and its tree.
    level = np.full(n_nodes, -1, dtype=np.int64)
    tree = np.full(n_nodes, -1, dtype=np.int64)
    frontier = roots.astype(np.int64)
    # bincount, not np.unique: unique reaches into numpy.ma, which the serving image leaves out
    if np.bincount(frontier, minlength=n_nodes).max() > 1:
        raise InvalidForest("two trees share a root")
    level[frontier], tree[frontier] = 0, np.arange(n_trees)
    depth = 0
    while True:
        splits = frontier[~leaf[frontier]]
        if len(splits) == 0:
            break
        depth += 1
        children = np.concatenate((nodes["left"][splits], nodes["right"][splits])).astype(np.int64)
        if np.bincount(children, minlength=n_nodes).max() > 1 or np.any(level[children] >= 0):
            raise InvalidForest(f"a node is reached twice (a cycle or a shared subtree) at depth {depth}")
        level[children] = depth
        tree[children] = np.concatenate((tree[splits], tree[splits]))
        frontier = children
    if np.any(unreached := level < 0):
        raise InvalidForest(f"node {_first(unreached)} belongs to no tree")
    deepest = np.zeros(n_trees, dtype=np.int64)
    np.maximum.at(deepest, tree, level)
    bad = deepest != depths
    if np.any(bad):
        at = _first(bad)
        raise InvalidForest(
            f"tree {at} has depth {int(depths[at])} recorded but its deepest leaf is at {deepest[at]}"
        )


class CompiledModel:
    """Predicts house values (units of $100k) from raw rows in schema order.

    Load once at start-up and share: it holds no per-call state, so threads may call it at once.
    """

    def __init__(self, model_dir: Path) -> None:
        """Load the artifact in `model_dir`.

        Raises:
            OSError: forest.so cannot be loaded (built for another platform: retrain in the image).
            InvalidForest: The forest's arrays are not what forest.so expects (see check_forest).
            ValueError: The feature table does not fit.
        """
        model_dir = Path(model_dir)
        self.features = FeatureTransformer.load(model_dir)
        # Keep references: the C side only holds raw pointers into these arrays.
        self._nodes = _load_array(model_dir / NODES_FILE, NODE_DTYPE)
        self._roots = _load_array(model_dir / ROOTS_FILE, INDEX_DTYPE)
        self._depths = _load_array(model_dir / DEPTHS_FILE, INDEX_DTYPE)
        check_forest(self._nodes, self._roots, self._depths, N_FEATURES)
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
