"""The seed-like baseline, kept only for benchmarks: what the project this replaces served.

Flask's development server, a pandas DataFrame built per request, no validation, the model's own
`predict` with its default threads: `python -m bench.baseline_app {same,first} MODEL_DIR PORT`.

- `same`: the service's own trained model (LightGBM's dump and the same feature table), predicted
  the ordinary way instead of through the compiled path. It isolates what the serving stack buys.
- `first`: this project's first model (tuned HistGradientBoosting on the raw features, trained
  here on the same split), served the seed's way: the "before" of the whole project.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightgbm as lgb
import pandas as pd
from flask import Flask, jsonify, request

from model.features import FeatureTransformer
from model.schema import FEATURE_NAMES
from model.train import AUDIT_FILE


class FirstModel:
    """The first model, refitted on the training split (about two seconds)."""

    def __init__(self) -> None:
        from model import data, pipeline

        parts = data.split(data.load_dataset())
        self._model = pipeline.build_previous_model().fit(parts.X_train, parts.y_train)

    def predict(self, frame: pd.DataFrame):
        return self._model.predict(frame[list(FEATURE_NAMES)])


class SeedModel:
    """The same trained model as the service's, predicted the ordinary way: LightGBM's own predict."""

    def __init__(self, model_dir: Path) -> None:
        self._features = FeatureTransformer.load(model_dir)
        self._booster = lgb.Booster(model_file=str(model_dir / AUDIT_FILE))

    def predict(self, frame: pd.DataFrame):
        return self._booster.predict(self._features.transform(frame[list(FEATURE_NAMES)].to_numpy()))


def make_app(which: str, model_dir: Path) -> Flask:
    """The seed's shape: load the model, predict from a one-row DataFrame of the JSON body."""
    model = SeedModel(model_dir) if which == "same" else FirstModel()
    app = Flask(__name__)

    @app.post("/predict")
    def predict():
        body = request.json
        if "instances" in body:  # a batch, the same seed-like way: one DataFrame of all records
            return jsonify(predictions=[float(p) for p in model.predict(pd.DataFrame(body["instances"]))])
        frame = pd.DataFrame([body])
        return jsonify(prediction=float(model.predict(frame)[0]))

    return app


if __name__ == "__main__":
    make_app(sys.argv[1], Path(sys.argv[2])).run(host="127.0.0.1", port=int(sys.argv[3]))
