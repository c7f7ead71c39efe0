"""A small closed-loop load for the fault tests: client threads, every request on its own connection.

Each request is recorded with when it started and ended and how it ended, so a test can tell a
request that was in flight when a fault struck from one that started after it. A fresh connection
per request keeps that attribution exact: no pooled connection can carry a failure from one request
to the next. Every run is bounded by a request count and a time limit.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

import requests

from model.schema import example_record

SINGLE = json.dumps(example_record()).encode()
BATCH = json.dumps({"instances": [example_record()] * 20}).encode()


@dataclass(frozen=True)
class Outcome:
    """One request: its path, when it started and ended (monotonic), and its status or error."""

    path: str
    started: float
    ended: float
    status: int | None  # None: no HTTP answer at all
    error: str | None = None

    def in_flight_at(self, moment: float) -> bool:
        """Whether the request had started and not yet ended at moment."""
        return self.started <= moment <= self.ended


class Load:
    """Client threads sending single records, batches of 20 and /ready probes until stopped."""

    def __init__(
        self, url: str, clients: int = 6, max_requests: int = 20_000, max_seconds: float = 120
    ) -> None:
        self.url = url
        self.clients = clients
        self.max_requests = max_requests
        self.deadline = time.monotonic() + max_seconds
        self.outcomes: list[Outcome] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop the clients and wait for their last requests (bounded by the request timeout)."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self, client: int) -> None:
        n = 0
        while not self._stop.is_set() and time.monotonic() < self.deadline:
            if len(self.outcomes) >= self.max_requests:
                return
            n += 1
            if n % 5 == 0:
                self.outcomes.append(self._send("GET", "/ready", None))
            else:
                body = BATCH if (n + client) % 3 == 0 else SINGLE
                self.outcomes.append(self._send("POST", "/predict", body))

    def _send(self, method: str, path: str, body: bytes | None) -> Outcome:
        started = time.monotonic()
        headers = {"Connection": "close", "Content-Type": "application/json"}
        try:
            answer = requests.request(method, self.url + path, data=body, headers=headers, timeout=30)
        except requests.RequestException as exc:
            return Outcome(path, started, time.monotonic(), None, type(exc).__name__)
        return Outcome(path, started, time.monotonic(), answer.status_code)

    def wait_for(self, count: int, timeout: float = 60) -> None:
        """Wait until at least count requests have finished.

        Raises:
            AssertionError: Not that many within timeout.
        """
        deadline = time.monotonic() + timeout
        while len(self.outcomes) < count:
            assert time.monotonic() < deadline, f"only {len(self.outcomes)} of {count} requests in {timeout}s"
            time.sleep(0.05)
