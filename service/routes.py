"""The HTTP routes: predict, health, readiness, metadata, metrics, OpenAPI and the page."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from model.schema import FEATURES
from service.errors import InvalidInput, ModelUnavailable, Problem
from service.predictor import LoadedModel, to_usd
from service.schemas import parse_json, parse_prediction_request

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
    payload = parse_json(request.get_data(cache=False))
    X, is_batch = parse_prediction_request(payload, current_app.config["MAX_BATCH"])
    predictor = _predictor()
    predictions = predictor.predict(X)
    current_app.extensions["metrics"].predictions.inc(len(predictions))
    if is_batch:
        return jsonify(
            predictions=[float(p) for p in predictions],
            prices_usd=to_usd(predictions),
            model_version=predictor.version,
        )
    return jsonify(
        prediction=float(predictions[0]),
        price_usd=to_usd(predictions)[0],
        model_version=predictor.version,
    )


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
    body = current_app.extensions["metrics"].exposition()
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
