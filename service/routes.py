"""The HTTP routes: predict, health, readiness, metadata, metrics, OpenAPI and the page."""

from __future__ import annotations

import msgspec
import numpy as np
from flask import Blueprint, Response, current_app, jsonify, render_template, request

from model.schema import FEATURES
from service import monitor
from service.cooperative import SLICE_RECORDS, breathe
from service.errors import InvalidInput, ModelUnavailable, Problem
from service.predictor import LoadedModel, to_usd
from service.schemas import parse_body

bp = Blueprint("api", __name__)

_JSON_TYPES = ("application/json",)


def _predictor() -> LoadedModel:
    return current_app.extensions["predictor"]


def _revision() -> str:
    return current_app.config["SETTINGS"].revision


def _is_json(mimetype: str) -> bool:
    return mimetype in _JSON_TYPES or (mimetype.startswith("application/") and mimetype.endswith("+json"))


@bp.post("/predict")
def predict() -> Response:
    """Predict one record, or a batch under "instances", in input order."""
    if not _is_json(request.mimetype):
        raise InvalidInput(
            415,
            "the body must be JSON",
            [Problem("Content-Type", f"must be application/json, got {request.mimetype or 'nothing'}")],
        )
    X, is_batch = parse_body(request.get_data(cache=False), current_app.config["MAX_BATCH"])
    predictor = _predictor()
    predictions = _predict(predictor, X)
    current_app.extensions["metrics"].predictions.inc(len(predictions))
    # X holds the validated (n, 8) rows and `predictions` their values: every served record is
    # counted into the shared drift window (service/monitor.py) before the answer.
    current_app.extensions["drift"].record(X, predictions)
    if is_batch:
        answer = {
            "predictions": predictions.tolist(),
            "prices_usd": to_usd(predictions),
            "model_version": predictor.version,
        }
    else:
        answer = {
            "prediction": float(predictions[0]),
            "price_usd": to_usd(predictions)[0],
            "model_version": predictor.version,
        }
    # serialized once, by msgspec: jsonify would go through json.dumps and Flask's response plumbing
    return Response(msgspec.json.encode(answer), mimetype="application/json")


def _predict(predictor: LoadedModel, X: np.ndarray) -> np.ndarray:
    """Predict in slices with a yield between them, so one large batch does not hold the worker."""
    if len(X) <= SLICE_RECORDS:
        return predictor.predict(X)
    parts = []
    for start in range(0, len(X), SLICE_RECORDS):
        breathe()
        parts.append(predictor.predict(X[start : start + SLICE_RECORDS]))
    return np.concatenate(parts)


@bp.get("/health")
def health() -> Response:
    """Liveness: the process answers."""
    return jsonify(status="ok")


@bp.get("/ready")
def ready() -> Response:
    """Readiness: the model is loaded and a known record predicts a finite value."""
    predictor = _predictor()
    if not predictor.self_test():
        raise ModelUnavailable("self-test prediction failed")
    # revision and model_version: the build's identity, which the smoke test and the rollout gate check
    return jsonify(status="ready", model_version=predictor.version, revision=_revision())


@bp.get("/metadata")
def metadata() -> Response:
    """The artifact's metadata.json as written at training time, and the image's revision."""
    return jsonify({**_predictor().metadata, "revision": _revision()})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus text format, aggregated over every gunicorn worker."""
    body = current_app.extensions["metrics"].exposition() + monitor.exposition()
    return Response(body, mimetype="text/plain; version=0.0.4")


@bp.get("/openapi.json")
def openapi() -> Response:
    """The OpenAPI 3 document of this API."""
    return jsonify(current_app.extensions["openapi"])


@bp.get("/")
def index() -> str:
    """The playground: one field per feature, a Predict button, the answer or the errors."""
    predictor = _predictor()
    return render_template("index.html", features=FEATURES, model_version=predictor.version)
