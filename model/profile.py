"""The reference profile: what the training rows looked like, for drift detection at serving time.

For each of the 8 raw features and for the model's prediction: the deciles of the training rows as
bin edges, and the share of training rows in each bin. The service (service/drift.py) counts the
records it predicts into the same bins and compares the shares (population stability index).

Bins follow Prometheus' `le` convention, so the same edges serve as histogram buckets: bin i holds
the values v with edges[i-1] < v <= edges[i]; the first bin is everything up to edges[0], the last
everything above edges[-1]. Repeated deciles (HouseAge piles up at its 52-year cap) are merged, so a
feature may have fewer than 10 bins.

numpy and the standard library only: the serving image loads this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.schema import FEATURE_NAMES

PROFILE_FILE = "profile.json"
PREDICTION = "prediction"  # the profile's name for the model's output, beside the 8 features
QUANTILES = tuple(q / 10 for q in range(1, 10))  # deciles: 9 inner edges, 10 bins
EDGE_DIGITS = 6  # edges are rounded so the file (and so the model version) is byte-stable


@dataclass(frozen=True)
class Reference:
    """One column's reference: bin upper edges (the last bin is unbounded) and its training share.

    Attributes:
        edges: Increasing inner edges; len(edges) + 1 bins.
        shares: Share of the training rows in each bin; sums to 1.
    """

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def as_dict(self) -> dict[str, list[float]]:
        """The JSON form written to profile.json."""
        return {"edges": list(self.edges), "shares": list(self.shares)}


def bin_index(edges: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The bin of each value: i such that edges[i-1] < v <= edges[i] (Prometheus' `le`)."""
    return np.searchsorted(edges, values, side="left")


def reference_of(values: np.ndarray) -> Reference:
    """Decile edges of `values` and the share of `values` in each resulting bin."""
    values = np.asarray(values, dtype=np.float64)
    edges = np.unique(np.round(np.quantile(values, QUANTILES), EDGE_DIGITS))
    counts = np.bincount(bin_index(edges, values), minlength=len(edges) + 1)
    shares = np.round(counts / counts.sum(), EDGE_DIGITS)
    return Reference(tuple(float(e) for e in edges), tuple(float(s) for s in shares))


def build_profile(X: np.ndarray, predictions: np.ndarray) -> dict[str, Reference]:
    """The reference of each raw feature (schema order) and of the prediction.

    Args:
        X: (n, 8) training rows in schema order.
        predictions: (n,) the served model's predictions for those rows.
    """
    profile = {name: reference_of(X[:, i]) for i, name in enumerate(FEATURE_NAMES)}
    profile[PREDICTION] = reference_of(predictions)
    return profile


def save_profile(out_dir: Path, profile: dict[str, Reference], rows: int) -> dict[str, Any]:
    """Write profile.json into an artifact folder (publish() then hashes it like every model file).

    Returns:
        The summary to record in metadata.json (so /metadata shows the reference).
    """
    document = {
        "rows": rows,
        "quantiles": list(QUANTILES),
        "columns": {name: ref.as_dict() for name, ref in profile.items()},
    }
    (out_dir / PROFILE_FILE).write_text(json.dumps(document, indent=2) + "\n")
    return {"file": PROFILE_FILE, **document}


def load_profile(model_dir: Path) -> dict[str, Reference]:
    """Read profile.json from a verified artifact.

    Raises:
        ValueError: The file is missing or does not describe every feature and the prediction.
    """
    path = model_dir / PROFILE_FILE
    try:
        columns = json.loads(path.read_text())["columns"]
        profile = {
            name: Reference(tuple(columns[name]["edges"]), tuple(columns[name]["shares"]))
            for name in (*FEATURE_NAMES, PREDICTION)
        }
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is missing or incomplete ({exc.__class__.__name__}); retrain") from None
    for name, ref in profile.items():
        if len(ref.shares) != len(ref.edges) + 1:
            raise ValueError(f"{path}: {name} has {len(ref.edges)} edges but {len(ref.shares)} shares")
    return profile
