"""The smoke command against real servers on loopback ports.

The happy path runs against the real service (a model trained into a temporary directory, gunicorn
on a free port). The failure modes run against small stand-ins of our own: a contract-speaking
server with one fault switched on, a port nothing listens on, and a socket that accepts
connections and never answers. Every wait is bounded by the command's own deadline.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from model.schema import FEATURE_NAMES, TARGET_UNIT_USD, example_record
from smoke import client as smoke
from testkit.http import serving
from testkit.live import gunicorn
from testkit.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("SCIKIT_LEARN_DATA", ROOT.parent / "shared" / "data" / "scikit_learn_data"))


def run_smoke(url: str, *args: str, limit: float = 60.0) -> subprocess.CompletedProcess[str]:
    """`python -m smoke URL ...` as a user runs it, in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "smoke", url, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
    )


# ---------------------------------------------------------------------------------------------
# A stand-in that speaks the service's contract, with faults to switch on one at a time.


def _price(record: dict[str, Any]) -> float:
    # a toy model: monotone in income, like the real one
    return 0.45 * float(record["MedInc"]) + 0.3


class StandIn(BaseHTTPRequestHandler):
    """Answers /health, /ready and /predict as the contract says, unless a fault says otherwise."""

    faults: frozenset[str] = frozenset()
    model_version = "standin"
    revision = "standin-revision"
    unhealthy_for = 0  # answer /health 503 this many times first (a server still booting)
    health_calls = 0

    def log_message(self, *args: Any) -> None:  # keep the test output quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        cls = type(self)
        if self.path == "/health":
            cls.health_calls += 1
            if cls.health_calls <= cls.unhealthy_for:
                self._send(503, {"status": "starting"})
            else:
                self._send(200, {"status": "ok"})
        elif self.path == "/ready":
            if "not-ready" in self.faults:
                self._send(503, {"status": "loading"})
            else:
                self._send(
                    200, {"status": "ready", "model_version": cls.model_version, "revision": cls._revision()}
                )
        else:
            self._send(404, {"error": {"code": 404, "message": "no such path", "details": []}})

    @classmethod
    def _revision(cls) -> str:
        # "mixed-builds": every other answer from another build, as a half-rolled fleet would give
        cls.ready_calls = getattr(cls, "ready_calls", 0) + 1
        if "mixed-builds" in cls.faults and cls.ready_calls % 2 == 0:
            return "old-revision"
        return cls.revision

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"null")
        records = body["instances"] if isinstance(body, dict) and "instances" in body else [body]
        missing = [n for n in FEATURE_NAMES if any(n not in r for r in records)]
        if missing:
            if "500-on-bad-input" in self.faults:
                self._send(500, {"error": {"code": 500, "message": "KeyError", "details": []}})
            else:
                details = [{"field": n, "reason": "required"} for n in missing]
                # the API's codes are the integer status (service/errors.py); the fault sends a string
                code = "invalid_input" if "string-error-code" in self.faults else 400
                self._send(400, {"error": {"code": code, "message": "bad record", "details": details}})
            return
        predictions = [_price(r) for r in records]
        if "absurd-price" in self.faults:
            predictions = [p * 100 for p in predictions]
        prices = [p * TARGET_UNIT_USD for p in predictions]
        if "instances" in body:
            if "short-batch" in self.faults:
                predictions, prices = predictions[:1], prices[:1]
            self._send(
                200, {"predictions": predictions, "prices_usd": prices, "model_version": self.model_version}
            )
        else:
            self._send(
                200,
                {"prediction": predictions[0], "price_usd": prices[0], "model_version": self.model_version},
            )


@contextlib.contextmanager
def stand_in(*faults: str, unhealthy_for: int = 0) -> Iterator[str]:
    """Serve a StandIn with these faults on a loopback port; yields its base URL."""
    handler = type(
        "Handler",
        (StandIn,),
        {"faults": frozenset(faults), "unhealthy_for": unhealthy_for, "health_calls": 0, "ready_calls": 0},
    )
    with serving(handler) as url:
        yield url


@contextlib.contextmanager
def silent_listener() -> Iterator[str]:
    """A socket that completes TCP handshakes (the kernel's backlog) and never answers a byte."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


# ---------------------------------------------------------------------------------------------
# The real service, trained into a temporary directory and served by gunicorn on a free port.


@pytest.fixture
def live_service(live_server) -> str:
    """The base URL of the session's real service (tests/conftest.py: gunicorn on a free port)."""
    return live_server.url


@pytest.mark.slow
def test_passes_against_the_real_service(live_service: str) -> None:
    done = run_smoke(live_service, "--wait", "90", "--interval", "0.5", limit=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "smoke: all checks passed" in done.stdout
    for check in ("health", "ready", "predict", "batch", "bad request"):
        assert f"ok   {check}" in done.stdout
    assert done.stderr == ""


REVISION = "0123abc-the-commit"


@pytest.fixture(scope="module")
def identified_service(trained_model_dir: Path) -> Iterator[tuple[str, str]]:
    """The real service, told its revision as the image tells it; yields (url, model_version)."""
    version = json.loads((trained_model_dir / "metadata.json").read_text())["model_version"]
    with gunicorn(trained_model_dir, {"WORKERS": "1", "GIT_REVISION": REVISION}) as server:
        yield server.url, version


@pytest.mark.slow
def test_the_right_identity_passes_against_the_real_service(identified_service: tuple[str, str]) -> None:
    url, version = identified_service
    done = run_smoke(
        url,
        "--wait",
        "60",
        "--expect-model-version",
        version,
        "--expect-revision",
        REVISION,
        "--samples",
        "5",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   identity" in done.stdout


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (("--expect-model-version", "some-other-model"), "expected model_version 'some-other-model'"),
        (("--expect-revision", "another-commit"), "expected model_version"),
    ],
)
def test_another_build_fails_in_one_line_against_the_real_service(
    identified_service: tuple[str, str], flags: tuple[str, str], named: str
) -> None:
    url, _version = identified_service
    done = run_smoke(url, "--wait", "60", *flags)
    assert done.returncode == 1
    failures = [x for x in done.stderr.splitlines() if x.startswith("FAIL")]
    assert len(failures) == 1, done.stderr
    assert failures[0].startswith("FAIL identity: serving model_version")
    assert named in failures[0]
    assert flags[1] in failures[0]
    assert f"revision {REVISION!r}" in failures[0], "the line names the build that answered"


def test_a_fleet_answering_from_two_builds_fails_the_sampled_identity() -> None:
    with stand_in("mixed-builds") as url:
        done = run_smoke(url, "--wait", "10", "--samples", "6", "--expect-revision", "standin-revision")
    assert done.returncode == 1
    (failure,) = [x for x in done.stderr.splitlines() if x.startswith("FAIL")]
    assert failure.startswith("FAIL identity[1]: serving model_version 'standin' revision 'old-revision'")


def test_one_sample_of_a_mixed_fleet_may_miss_the_old_build_so_the_pipeline_samples_many() -> None:
    # the first answer alone comes from the new build: one sample cannot see the half-rolled fleet
    with stand_in("mixed-builds") as url:
        assert run_smoke(url, "--wait", "10", "--expect-revision", "standin-revision").returncode == 0


# ---------------------------------------------------------------------------------------------
# Failure modes, against stand-ins.


def test_passes_against_a_server_that_speaks_the_contract_after_booting() -> None:
    with stand_in(unhealthy_for=3) as url:
        done = run_smoke(url, "--wait", "20", "--interval", "0.2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   health" in done.stdout


def test_gives_up_at_the_deadline_when_nothing_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = run_smoke(url, "--wait", "3", "--interval", "0.5", limit=30)
    elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], "one line for the one failure"
    assert "health: gave up after 3s" in done.stderr
    assert "connection refused" in done.stderr
    assert url in done.stderr
    assert elapsed < 25, "bounded by the deadline, plus interpreter start-up"


def test_gives_up_at_the_deadline_when_the_server_never_answers() -> None:
    with silent_listener() as url:
        started = time.monotonic()
        # a per-request timeout far longer than the deadline: the deadline must still win
        done = run_smoke(url, "--wait", "3", "--timeout", "60", limit=30)
        elapsed = time.monotonic() - started
    assert done.returncode == 1
    assert "health: gave up after 3s" in done.stderr
    assert "timed out" in done.stderr
    assert elapsed < 25, "the request timeout is cut to the time left before the deadline"


@pytest.mark.parametrize(
    ("fault", "line"),
    [
        ("not-ready", "FAIL ready: expected HTTP 200, got 503"),
        ("absurd-price", "FAIL predict: price $"),
        ("short-batch", "FAIL batch: sent 2 records, got 1 predictions, 1 prices"),
        ("500-on-bad-input", "FAIL bad request: a record without 'MedInc' got HTTP 500, expected 4xx"),
        (
            "string-error-code",
            "FAIL bad request: error.code should be the integer status 400, got 'invalid_input'",
        ),
    ],
)
def test_a_broken_contract_fails_with_one_line_naming_it(fault: str, line: str) -> None:
    with stand_in(fault) as url:
        done = run_smoke(url, "--wait", "10")
    assert done.returncode == 1
    failures = [x for x in done.stderr.splitlines() if x.startswith("FAIL")]
    assert any(x.startswith(line) for x in failures), done.stderr
    assert done.stderr.splitlines()[-1].startswith("smoke: "), "a summary closes the report"
    assert "all checks passed" not in done.stdout


def test_every_failed_check_gets_its_own_line() -> None:
    with stand_in("absurd-price", "500-on-bad-input") as url:
        done = run_smoke(url, "--wait", "10")
    failures = [x for x in done.stderr.splitlines() if x.startswith("FAIL")]
    assert [x.split(":")[0] for x in failures] == ["FAIL predict", "FAIL batch[0]", "FAIL bad request"]
    assert "smoke: 3 check(s) failed" in done.stderr


@pytest.mark.parametrize("url", ["ftp://example.com", "file:///etc/passwd", "1.2.3.4", "http://"])
def test_a_url_that_is_not_http_is_a_usage_error(url: str) -> None:
    done = run_smoke(url)
    assert done.returncode == 2
    assert "URL must be http:// or https://" in done.stderr


def test_imports_nothing_but_the_standard_library_and_the_schema() -> None:
    tree = ast.Module(
        body=[node for path in (ROOT / "smoke").glob("*.py") for node in ast.parse(path.read_text()).body],
        type_ignores=[],
    )
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    # service.telemetry: the drift statuses, standard library only like model.schema (smoke.drift_report)
    ours = {"model.schema", "smoke.client", "service.telemetry"}
    foreign = {m for m in imported if m.split(".")[0] not in sys.stdlib_module_names} - ours
    assert not foreign


def test_runs_with_the_standard_library_alone() -> None:
    # -S leaves site-packages off sys.path: what a bare runner's Python has
    done = subprocess.run(
        [sys.executable, "-S", "-m", "smoke", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: python -m smoke" in done.stdout


def test_a_4xx_answer_is_a_response_not_an_exception() -> None:
    with stand_in() as url:
        resp = smoke.request("GET", url + "/nowhere", timeout=5)
    assert resp.status == 404
    assert resp.data["error"]["code"] == 404


def shape(value: Any) -> Any:
    """A JSON value's structure: keys and types, never the values (a model's numbers differ)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [shape(value[0])] if value else []
    return (
        "number" if isinstance(value, int | float) and not isinstance(value, bool) else type(value).__name__
    )


CONTRACT_REQUESTS = [
    ("GET", "/ready", None),
    ("POST", "/predict", example_record()),
    ("POST", "/predict", {"instances": [example_record(), example_record()]}),
    ("POST", "/predict", {k: v for k, v in example_record().items() if k != FEATURE_NAMES[0]}),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "payload"), CONTRACT_REQUESTS, ids=["ready", "one", "batch", "bad"]
)
def test_the_stand_in_answers_with_the_real_services_statuses_and_shapes(
    live_service: str, method: str, path: str, payload: Any
) -> None:
    # guards the failure-mode tests: a stand-in that drifted from the real contract would prove nothing
    real = smoke.request(method, live_service + path, payload, timeout=10)
    with stand_in() as url:
        fake = smoke.request(method, url + path, payload, timeout=10)
    assert fake.status == real.status
    assert shape(fake.data) == shape(real.data)
