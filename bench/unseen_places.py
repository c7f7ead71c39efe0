"""Issue 23's unseen-places screen: candidates against plain LightGBM, training rows only.

    nice python -m bench.unseen_places [--out /tmp/unseen_places.json]

Every candidate is scored on the same folds of the 16,512 training rows (the test split is never
read): the random-split CV and the spatial CV of model/evaluate.py (1 degree cells), and a spatial
CV over 0.5 degree cells, the grid the served design's inner spatial folds use. Candidates:

* the served design as it is (model/pipeline.py);
* plain LightGBM on the 8 raw features, the yardstick, and a smaller one (300 x 31) that a serving
  path could afford beside the served forest;
* "near only": the served design with its neighbourhood prices masked (missing) where the 16th
  nearest training block group is more than MASK_KM away, in training and in lookups alike;
* blends of the served design with a plain model, leaning on the served design when neighbours
  are near: w = exp(-km16 / scale), prediction = w * served + (1 - w) * plain; scored from the
  same fold predictions, so they cost no fit. Choosing a scale on the folds that report it is
  optimistic, so the screen also reports a nested figure: each fold's scale is the one that
  scores best on the other four folds' held-out rows.

Prints one JSON document: every candidate's per-fold RMSEs under each protocol.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from model import data, evaluate, pipeline
from model.features import KNN_COLUMNS, N_RAW, FeatureTransformer, cell_ids, feature_names

MASK_KM = 10.0  # set before measuring: a town's 16 nearest block groups lie within a few km
BLEND_SCALES_KM = (5.0, 10.0, 20.0, 40.0, 80.0)
SMALL_PLAIN_PARAMS = {**pipeline.PLAIN_LGBM_PARAMS, "n_estimators": 300, "learning_rate": 0.08}
SMALL_PLAIN_PARAMS["num_leaves"] = 31
FITTED = ("served", "plain", "small plain", "near only")
PRICE_COLUMNS = [feature_names().index(c) for c in KNN_COLUMNS if not c.endswith("_km")]
KM16 = feature_names().index("knn16_km")


class _Masked:
    """The served design with the neighbourhood prices missing where the neighbours are far."""

    def __init__(self, X: np.ndarray, y: np.ndarray) -> None:
        import lightgbm as lgb

        self.features = FeatureTransformer()
        rows = self.features.fit_transform(X, y, build_table=False)
        self.booster = lgb.LGBMRegressor(**pipeline.LGBM_PARAMS).fit(
            self._mask(rows.features), rows.target, sample_weight=rows.weight
        )

    @staticmethod
    def _mask(F: np.ndarray) -> np.ndarray:
        F = F.copy()
        far = F[:, KM16] > MASK_KM
        F[np.ix_(far, PRICE_COLUMNS)] = np.nan
        return F

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.booster.predict(self._mask(self.features.transform(X)))


def _rmse(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - p) ** 2)))


def fold_predictions(X: np.ndarray, y: np.ndarray, folds: evaluate.Folds) -> list[dict[str, np.ndarray]]:
    """Per fold: the held-out targets, km to the 16th neighbour, and every fitted candidate's predictions."""
    import lightgbm as lgb

    out = []
    for number, (fit_rows, held) in enumerate(folds, start=1):
        Xf, yf, Xh = X[fit_rows], y[fit_rows], X[held]
        served = pipeline.fit_cv_model(Xf, yf)
        out.append(
            {
                "y": y[held],
                "km16": served.features.transform(Xh)[:, KM16],
                "served": served.predict(Xh),
                "plain": pipeline.build_plain_lightgbm().fit(Xf, yf).predict(Xh),
                "small plain": lgb.LGBMRegressor(**SMALL_PLAIN_PARAMS).fit(Xf, yf).predict(Xh),
                "near only": _Masked(Xf, yf).predict(Xh),
            }
        )
        print(f"  fold {number}/{len(folds)} done", file=sys.stderr, flush=True)
    return out


def blend(fold: dict[str, np.ndarray], plain: str, scale: float) -> np.ndarray:
    """w * served + (1 - w) * plain, w = exp(-km16 / scale): the served design where neighbours are near."""
    w = np.exp(-fold["km16"] / scale)
    return w * fold["served"] + (1 - w) * fold[plain]


def score(preds: list[dict[str, np.ndarray]]) -> dict[str, list[float]]:
    """Every candidate's per-fold RMSE, the blends and their nested choice included."""
    result = {name: [_rmse(f["y"], f[name]) for f in preds] for name in FITTED}
    for plain in ("plain", "small plain"):
        per_scale = {s: [_rmse(f["y"], blend(f, plain, s)) for f in preds] for s in BLEND_SCALES_KM}
        for s, folds in per_scale.items():
            result[f"blend with {plain}, scale {s:g} km"] = folds
        nested = []
        for i, f in enumerate(preds):  # the scale chosen on the other folds' held-out rows
            others = [g for j, g in enumerate(preds) if j != i]
            y_o = np.concatenate([g["y"] for g in others])
            best = min(
                BLEND_SCALES_KM,
                key=lambda s, others=others, y_o=y_o, plain=plain: _rmse(
                    y_o, np.concatenate([blend(g, plain, s) for g in others])
                ),
            )
            nested.append(_rmse(f["y"], blend(f, plain, best)))
        result[f"blend with {plain}, scale chosen on the other folds"] = nested
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the screen; write and print the per-fold figures."""
    summary = __doc__.split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m bench.unseen_places", description=summary)
    parser.add_argument("--out", type=Path, default=Path("/tmp/unseen_places.json"))
    args = parser.parse_args(argv)
    parts = data.split(data.load_dataset())
    X, y = parts.X_train.to_numpy(), parts.y_train.to_numpy()  # training rows only
    assert X.shape[1] == N_RAW
    from sklearn.model_selection import GroupKFold

    protocols: dict[str, evaluate.Folds] = {
        "random": evaluate.random_folds(len(X)),
        "spatial 1°": evaluate.spatial_folds(X),
        "spatial 0.5°": list(GroupKFold(n_splits=evaluate.CV_FOLDS).split(X, groups=cell_ids(X, 0.5))),
    }
    figures: dict[str, Any] = {}
    for name, folds in protocols.items():
        print(f"{name}:", file=sys.stderr, flush=True)
        figures[name] = score(fold_predictions(X, y, folds))
        args.out.write_text(json.dumps(figures, indent=1))
    print(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
