"""Structured logs: one JSON object per line, and one access line per request."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, Response, g, request

ACCESS = logging.getLogger("service.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; extra fields travel in `record.fields`."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure_logging(level: str) -> None:
    """Send the service's loggers to stderr as JSON lines (once per process)."""
    logger = logging.getLogger("service")
    logger.setLevel(level)
    if not any(getattr(h, "_cali_json", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._cali_json = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def route_label() -> str:
    """The matched URL rule, so unknown paths cannot blow up the metrics' label count."""
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


def install_request_hooks(app: Flask) -> None:
    """Time each request, give it an id, count it, and write its access line."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        request_id = g.get("request_id") or uuid.uuid4().hex
        response.headers["X-Request-ID"] = request_id
        route = route_label()
        metrics = app.extensions["metrics"]
        metrics.requests.labels(request.method, route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(elapsed)
        ACCESS.info(
            "request",
            extra={
                "fields": {
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round(elapsed * 1000, 3),
                    "request_id": request_id,
                }
            },
        )
        return response
