"""Errors as values with names, and the one place that turns them into JSON responses.

Every 4xx and 5xx the service sends has the shape
`{"error": {"code": int, "message": str, "details": [{"field": str, "reason": str}]}}`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

log = logging.getLogger("service")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the request: which field, and why."""

    field: str
    reason: str


class ApiError(Exception):
    """A client mistake the service answers with a 4xx."""

    def __init__(self, status: int, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details or []


class InvalidInput(ApiError):
    """The request body is not a valid record or batch; details name every bad field."""


class ModelUnavailable(Exception):
    """The model cannot answer right now (it failed its self-test)."""


def error_response(status: int, message: str, details: list[Problem] | None = None) -> Response:
    """Build the JSON error body every error shares."""
    body = {
        "error": {
            "code": status,
            "message": message,
            "details": [{"field": p.field, "reason": p.reason} for p in details or []],
        }
    }
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every exception through one JSON shape; a 500 never shows internals."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        # a body over MAX_BODY_BYTES is refused from its Content-Length: the body is what to fix
        details = (
            [Problem("body", "is larger than the server accepts")]
            if isinstance(exc, RequestEntityTooLarge)
            else None
        )
        response = error_response(status, exc.description or exc.name, details)
        # keep what the protocol needs, e.g. the Allow header of a 405
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(ModelUnavailable)
    def _model_unavailable(exc: ModelUnavailable) -> Response:
        log.error("model unavailable: %s", exc)
        return error_response(503, "the model is not available; try again shortly")

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        # The traceback goes to the log for the operator, never to the client.
        log.exception("unhandled error")
        return error_response(500, "internal error")
