"""The seed-like baseline, kept only for benchmarks: what the project this replaces served.

Flask's development server, a pandas DataFrame built per request, no validation, the model's own
`predict` with its default threads: `python -m bench.baseline_app MODEL_DIR PORT`. Same trained
model as the real service (LightGBM's dump and the same feature table), without the compiled path.
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


class SeedModel:
    """The same trained model as the service's, predicted the ordinary way: LightGBM's own predict."""

    def __init__(self, model_dir: Path) -> None:
        self._features = FeatureTransformer.load(model_dir)
        self._booster = lgb.Booster(model_file=str(model_dir / AUDIT_FILE))

    def predict(self, frame: pd.DataFrame):
        return self._booster.predict(self._features.transform(frame[list(FEATURE_NAMES)].to_numpy()))


def make_app(model_dir: Path) -> Flask:
    """The seed's shape: load the model, predict from a one-row DataFrame of the JSON body."""
    model = SeedModel(model_dir)
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
    make_app(Path(sys.argv[1])).run(host="127.0.0.1", port=int(sys.argv[2]))
