"""Turn a trained LightGBM model into the served artifact (training side only).

The served artifact is data plus one small shared library:

* `forest_nodes.npy`, `forest_roots.npy`, `forest_depths.npy`: every tree flattened into one
  array of 32-byte nodes (the layout of `Node` in `treeeval.c`);
* `forest.so`: `treeeval.c` compiled here, at training time, so the serving image needs no
  compiler; the C source does not depend on the model, the arrays do.

The flattening reads LightGBM's own JSON dump and reproduces its decision rule exactly: go left
when `x <= threshold`; a NaN goes where LightGBM sends it (the default side when the split
learned a missing-value direction, else it is treated as 0.0). Anything this evaluator cannot
reproduce (categorical splits, zero-as-missing, linear trees) is refused, not approximated.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model.runtime import DEPTHS_FILE, LIBRARY_FILE, NODE_DTYPE, NODES_FILE, ROOTS_FILE

C_SOURCE = Path(__file__).with_name("treeeval.c")
# Portable code (no -march=native): the image may run on another CPU than the one that built it.
CFLAGS = ("-O3", "-std=c99", "-fPIC", "-shared", "-s", "-fno-ident")


class CompilerMissing(RuntimeError):
    """No C compiler to build the forest evaluator with."""


class UnsupportedModel(ValueError):
    """The model uses a feature of LightGBM that the flattened evaluator does not reproduce."""


def flatten_lightgbm(dump: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten `Booster.dump_model()` into (nodes, roots, depths).

    Args:
        dump: The JSON dump of a single-output LightGBM regression model.

    Returns:
        nodes (NODE_DTYPE), roots (int32, one per tree), depths (int32, steps to the deepest leaf).

    Raises:
        UnsupportedModel: Categorical splits, zero-as-missing, linear trees or several outputs.
    """
    if dump.get("num_tree_per_iteration", 1) != 1:
        raise UnsupportedModel("only single-output models are supported")
    rows: list[tuple[float, float, int, int, int, int]] = []
    roots: list[int] = []
    depths: list[int] = []

    def add(node: dict[str, Any]) -> tuple[int, int]:
        """Append the subtree; returns (its index, its depth)."""
        index = len(rows)
        if "split_index" not in node:  # a leaf points at itself, see treeeval.c
            if "leaf_coeff" in node:
                raise UnsupportedModel("linear trees are not supported")
            rows.append((np.inf, float(node["leaf_value"]), 0, index, index, 1))
            return index, 0
        if node["decision_type"] != "<=":
            raise UnsupportedModel("categorical splits are not supported")
        threshold = float(node["threshold"])
        missing = node["missing_type"]
        if missing == "NaN":
            nan_right = 0 if node["default_left"] else 1
        elif missing == "None":  # LightGBM turns NaN into 0.0 before comparing
            nan_right = 0 if threshold >= 0.0 else 1
        else:
            raise UnsupportedModel(f"missing_type {missing!r} is not supported")
        rows.append((threshold, 0.0, int(node["split_feature"]), -1, -1, nan_right))
        left, left_depth = add(node["left_child"])
        right, right_depth = add(node["right_child"])
        rows[index] = (*rows[index][:3], left, right, nan_right)
        return index, 1 + max(left_depth, right_depth)

    for tree in dump["tree_info"]:
        root, depth = add(tree["tree_structure"])
        roots.append(root)
        depths.append(depth)
    nodes = np.array(rows, dtype=NODE_DTYPE)
    return nodes, np.array(roots, dtype=np.int32), np.array(depths, dtype=np.int32)


def compile_evaluator(out_dir: Path, cc: str | None = None) -> Path:
    """Compile treeeval.c into out_dir/forest.so, byte-for-byte the same on every run.

    The compiler runs in a scratch folder on relative file names, and the library is stripped,
    so no path, time or compiler banner ends up in the bytes.

    Raises:
        CompilerMissing: No C compiler on PATH.
        subprocess.CalledProcessError: The compiler failed.
    """
    cc = cc or os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise CompilerMissing(
            f"no C compiler ({cc!r}) on PATH: training compiles the forest evaluator "
            "(Debian/Ubuntu: apt-get install gcc; macOS: xcode-select --install)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(C_SOURCE, Path(tmp) / "treeeval.c")
        subprocess.run([cc, *CFLAGS, "-o", LIBRARY_FILE, "treeeval.c"], cwd=tmp, check=True)
        target = out_dir / LIBRARY_FILE
        shutil.copyfile(Path(tmp) / LIBRARY_FILE, target)
    return target


def export_forest(booster: Any, out_dir: Path) -> dict[str, Any]:
    """Write the flattened forest and the compiled evaluator for a trained booster.

    Args:
        booster: A trained `lightgbm.Booster` (or an `LGBMRegressor`'s `.booster_`).
        out_dir: The artifact folder.

    Returns:
        A summary for metadata.json: trees, nodes, deepest tree.
    """
    nodes, roots, depths = flatten_lightgbm(booster.dump_model())
    out_dir.mkdir(parents=True, exist_ok=True)
    np.save(out_dir / NODES_FILE, nodes, allow_pickle=False)
    np.save(out_dir / ROOTS_FILE, roots, allow_pickle=False)
    np.save(out_dir / DEPTHS_FILE, depths, allow_pickle=False)
    compile_evaluator(out_dir)
    return {
        "trees": len(roots),
        "nodes": len(nodes),
        "max_depth": int(depths.max()),
        "mean_depth": round(float(depths.mean()), 2),
    }
