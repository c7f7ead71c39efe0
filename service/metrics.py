"""Prometheus metrics, correct across gunicorn workers.

Under gunicorn, service/gunicorn_conf.py points PROMETHEUS_MULTIPROC_DIR at a fresh folder; each
worker then writes its samples there and /metrics aggregates all of them. Without it (tests, a
single process) the app's own registry is served.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

# The method label takes one of these values: a client may send any token as its method, and each
# new label value is a new time series, kept for the life of the process.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
OTHER_METHOD = "OTHER"


def method_label(method: str) -> str:
    """The request's method as a metric label: itself when standard, else OTHER_METHOD."""
    return method if method in METHODS else OTHER_METHOD


class Metrics:
    """The service's metrics, one set per app."""

    def __init__(self, multiprocess_dir: str | None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time spent answering a request, by route.",
            ["route"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )
        self.predictions = Counter(
            "predictions_total", "Records predicted (a batch counts each record).", registry=self.registry
        )
        # (method, route, status) -> that label set's counter and histogram children. `.labels()`
        # validates and looks the children up under a lock on every call; the label sets are few and
        # bounded (fixed methods, matched routes, status codes), so each is looked up once.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request and record how long it took."""
        key = (method_label(method), route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(key[0], route, str(status)), self.latency.labels(route))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def exposition(self) -> bytes:
        """The text format of every worker's samples (or this process's alone)."""
        if self._multiprocess_dir:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry, path=self._multiprocess_dir)
            return generate_latest(registry)
        return generate_latest(self.registry)
