"""The seed-like baseline, kept only for benchmarks: what the project this replaces served.

Flask's development server, a pandas DataFrame built per request, no validation, no thread
pinning: `python -m bench.baseline_app MODEL_DIR PORT`. Same model as the real service.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pandas as pd
from flask import Flask, jsonify, request

from model.artifact import load_artifact


def make_app(model_dir: Path) -> Flask:
    """The seed's shape: load the model, predict from a one-row DataFrame of the JSON body."""
    model = load_artifact(model_dir).estimator
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
    # the model was fitted on arrays; the seed fed it a DataFrame and lived with the warning
    warnings.filterwarnings("ignore", message="X has feature names")
    make_app(Path(sys.argv[1])).run(host="127.0.0.1", port=int(sys.argv[2]))
