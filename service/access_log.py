"""Structured logs: one JSON object per line, and one access line per request."""

from __future__ import annotations

import logging
import random
import re
import sys
import time

import msgspec
from flask import Flask, Response, g, request

ACCESS = logging.getLogger("service.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class JsonFormatter(logging.Formatter):
    """Render a record as one JSON line; extra fields travel in `record.fields`.

    Every request writes one, so it is cheap: the timestamp's date and time are formatted once per
    second, and msgspec encodes the line (anything it cannot encode is written as its str()).
    """

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._second_text = ""
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def _timestamp(self, created: float) -> str:
        # ISO 8601 in UTC with milliseconds, as datetime.isoformat(timespec="milliseconds") writes it
        second = int(created)
        if second != self._second:
            self._second_text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._second_text}.{int((created - second) * 1000):03d}+00:00"

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": self._timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return self._encoder.encode(line).decode()


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


def new_request_id() -> str:
    """32 hex digits naming one request in the logs."""
    # A correlation id, not a secret: the process's PRNG (seeded from the OS per process; gunicorn
    # reseeds it in every worker) costs no system call, where uuid4 reads os.urandom each time.
    return f"{random.getrandbits(128):032x}"


def route_label() -> str:
    """The matched URL rule, so unknown paths cannot blow up the metrics' label count."""
    return request.url_rule.rule if request.url_rule is not None else "<unmatched>"


def install_request_hooks(app: Flask) -> None:
    """Time each request, give it an id, count it, and write its access line."""

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        incoming = request.headers.get("X-Request-ID", "")
        g.request_id = incoming if _REQUEST_ID.match(incoming) else new_request_id()

    @app.after_request
    def _finish(response: Response) -> Response:
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        request_id = g.get("request_id") or new_request_id()
        response.headers["X-Request-ID"] = request_id
        metrics = app.extensions["metrics"]
        metrics.observe_request(request.method, route_label(), response.status_code, elapsed)
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
