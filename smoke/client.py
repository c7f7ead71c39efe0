"""The smoke test of a running service: `python -m smoke URL`.

It waits for `/health` to answer until a deadline (a fresh server takes minutes to boot, pull the
image and load the model), then checks what a client relies on: `/ready`, one prediction of a
known record (schema and a plausible price), a batch, and that a bad request gets a 4xx JSON error.
Exit status 0 only when every check holds; otherwise one line per failed check on stderr.

Identity: `--expect-model-version V [--expect-revision R]` fails, in one line, when `/ready` names
another build; `--samples N` asks `/ready` N times (through a load balancer, enough to reach every
instance) and every answer must come from the same, expected build.

Standard library only (urllib), so it runs anywhere with plain Python: a CI runner, an operator's
laptop, the deploy rehearsal. The one project import, `model.schema`, is standard library too.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from model.schema import FEATURE_NAMES, TARGET_UNIT_USD, example_record

# The dataset's target runs from $14,999 to $500,001 (capped); a model may stray a little beyond.
PLAUSIBLE_USD = (10_000.0, 1_000_000.0)
# The example record is the dataset's first block group in Berkeley (true value $452,600):
# any model worth serving prices it well above the state's median and below the cap's double.
KNOWN_RECORD_USD = (200_000.0, 800_000.0)
USD_TOLERANCE = 1.0  # price_usd is prediction x $100k, up to rounding


class SmokeFailure(Exception):
    """A check that did not hold; the message is the one line a reader sees."""


@dataclass(frozen=True)
class Response:
    """What the server answered; `data` is the parsed JSON body, or None if it was not JSON."""

    status: int
    content_type: str
    data: Any
    text: str


@dataclass(frozen=True)
class SmokeOptions:
    """How long to wait and for what.

    Attributes:
        url: The service's base URL, e.g. http://1.2.3.4 or http://127.0.0.1:8080.
        wait: Seconds to wait, in all, for `/health` to answer 200.
        interval: Seconds between two `/health` attempts.
        timeout: Seconds one request may take once the server is up.
        expect_model_version: The model_version every answer must name; None accepts any.
        expect_revision: The revision `/ready` must name; None accepts any.
        samples: How many `/ready` answers to check for identity (1: the readiness check alone).
    """

    url: str
    wait: float = 300.0
    interval: float = 2.0
    timeout: float = 10.0
    expect_model_version: str | None = None
    expect_revision: str | None = None
    samples: int = 1


def request(method: str, url: str, payload: Any = None, *, timeout: float) -> Response:
    """Send one request; a 4xx/5xx is a Response too, only network errors raise.

    Raises:
        OSError: The server could not be reached or did not answer within `timeout`
            (urllib.error.URLError, ConnectionError and TimeoutError are all OSErrors).
    """
    body = None if payload is None else json.dumps(payload).encode()
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = "application/json"
    # the scheme is checked in parse_args: only http(s) URLs reach here
    req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            status, content_type, raw = resp.status, resp.headers.get("Content-Type", ""), resp.read()
    except urllib.error.HTTPError as err:  # an answer with a 4xx/5xx status, not a network error
        status, content_type, raw = err.code, err.headers.get("Content-Type", ""), err.read()
    text = raw.decode("utf-8", errors="replace")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    return Response(status, content_type, data, text)


def _describe(err: BaseException) -> str:
    """A short reason for a network error: 'connection refused', 'timed out', ..."""
    reason = getattr(err, "reason", err)
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(reason) or type(reason).__name__


def wait_for_health(
    settings: SmokeOptions, *, clock: Callable[[], float] = time.monotonic, sleep=time.sleep
) -> None:
    """Poll `/health` until it answers 200 {"status": "ok"} or the deadline passes.

    Every attempt's timeout is cut to the time left, so a server that accepts connections and
    never answers still cannot hold the command past its deadline.

    Raises:
        SmokeFailure: The deadline passed; the message names the last thing that went wrong.
    """
    url = settings.url + "/health"
    deadline = clock() + settings.wait
    attempts, last = 0, "no attempt made"
    while True:
        left = deadline - clock()
        if left <= 0:
            raise SmokeFailure(
                f"health: gave up after {settings.wait:g}s and {attempts} attempt(s): "
                f"{url} never answered 200 (last: {last})"
            )
        attempts += 1
        try:
            resp = request("GET", url, timeout=max(0.1, min(settings.timeout, left)))
        except OSError as err:
            last = _describe(err)
        else:
            if resp.status == 200 and isinstance(resp.data, dict) and resp.data.get("status") == "ok":
                return
            last = f"HTTP {resp.status} {resp.text[:80]!r}"
        sleep(max(0.0, min(settings.interval, deadline - clock())))


def _json_object(resp: Response, what: str, status: int = 200) -> dict[str, Any]:
    if resp.status != status:
        raise SmokeFailure(f"{what}: expected HTTP {status}, got {resp.status}: {resp.text[:120]!r}")
    if not isinstance(resp.data, dict):
        raise SmokeFailure(f"{what}: expected a JSON object, got {resp.text[:120]!r}")
    return resp.data


def _number(data: dict[str, Any], key: str, what: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SmokeFailure(f"{what}: {key!r} should be a finite number, got {value!r}")
    return float(value)


def _text(data: dict[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SmokeFailure(f"{what}: {key!r} should be a non-empty string, got {value!r}")
    return value


def _version(data: dict[str, Any], what: str) -> str:
    return _text(data, "model_version", what)


def _identity(data: dict[str, Any], what: str) -> tuple[str, str]:
    """(model_version, revision) from a `/ready` answer."""
    return _version(data, what), _text(data, "revision", what)


def _check_price(prediction: float, price_usd: float, what: str, bounds: tuple[float, float]) -> None:
    if abs(prediction * TARGET_UNIT_USD - price_usd) > USD_TOLERANCE:
        raise SmokeFailure(f"{what}: price_usd {price_usd} is not prediction {prediction} x $100k")
    low, high = bounds
    if not low <= price_usd <= high:
        raise SmokeFailure(
            f"{what}: price ${price_usd:,.0f} is outside the plausible ${low:,.0f}-${high:,.0f}"
        )


class Smoke:
    """The checks after `/health`, each raising SmokeFailure; they share what earlier ones saw."""

    def __init__(self, settings: SmokeOptions) -> None:
        self.settings = settings
        self.ready_version: str | None = None
        self.ready_identity: tuple[str, str] | None = None
        self.single_prediction: float | None = None

    def call(self, method: str, path: str, payload: Any = None) -> Response:
        try:
            return request(method, self.settings.url + path, payload, timeout=self.settings.timeout)
        except OSError as err:
            raise SmokeFailure(f"{method} {path}: no answer ({_describe(err)})") from err

    def ready(self) -> None:
        data = _json_object(self.call("GET", "/ready"), "ready")
        if data.get("status") != "ready":
            raise SmokeFailure(f"ready: expected status 'ready', got {data.get('status')!r}")
        self.ready_identity = _identity(data, "ready")
        self.ready_version = self.ready_identity[0]

    def _check_identity(self, found: tuple[str, str], what: str) -> None:
        expected = (self.settings.expect_model_version, self.settings.expect_revision)
        if any(want is not None and want != got for want, got in zip(expected, found, strict=True)):
            want_version, want_revision = expected
            raise SmokeFailure(
                f"{what}: serving model_version {found[0]!r} revision {found[1]!r}, expected "
                f"model_version {want_version or 'any'!r} revision {want_revision or 'any'!r}: "
                "another build answers"
            )

    def identity(self) -> None:
        """Every sampled `/ready` answer names the expected build (and the same one)."""
        if self.ready_identity is None:
            raise SmokeFailure("identity: /ready gave no identity to check")
        self._check_identity(self.ready_identity, "identity")
        seen = {self.ready_identity}
        for i in range(1, self.settings.samples):
            found = _identity(_json_object(self.call("GET", "/ready"), f"identity[{i}]"), f"identity[{i}]")
            self._check_identity(found, f"identity[{i}]")
            seen.add(found)
        if len(seen) > 1:
            raise SmokeFailure(f"identity: {len(seen)} different builds answered: {sorted(seen)}")

    def predict_one(self) -> None:
        data = _json_object(self.call("POST", "/predict", example_record()), "predict")
        prediction = _number(data, "prediction", "predict")
        _check_price(prediction, _number(data, "price_usd", "predict"), "predict", KNOWN_RECORD_USD)
        version = _version(data, "predict")
        if self.ready_version is not None and version != self.ready_version:
            raise SmokeFailure(
                f"predict: model_version {version!r} differs from /ready's {self.ready_version!r}"
            )
        self.single_prediction = prediction

    def predict_batch(self) -> None:
        poorer = {**example_record(), "MedInc": 1.5}
        data = _json_object(self.call("POST", "/predict", {"instances": [example_record(), poorer]}), "batch")
        predictions, prices = data.get("predictions"), data.get("prices_usd")
        if not (isinstance(predictions, list) and isinstance(prices, list)):
            raise SmokeFailure(f"batch: expected lists 'predictions' and 'prices_usd', got {data!r:.160}")
        if len(predictions) != 2 or len(prices) != 2:
            raise SmokeFailure(
                f"batch: sent 2 records, got {len(predictions)} predictions, {len(prices)} prices"
            )
        for i, (prediction, price) in enumerate(zip(predictions, prices, strict=True)):
            item = {"prediction": prediction, "price_usd": price}
            _check_price(
                _number(item, "prediction", f"batch[{i}]"),
                _number(item, "price_usd", f"batch[{i}]"),
                f"batch[{i}]",
                PLAUSIBLE_USD,
            )
        _version(data, "batch")
        single = self.single_prediction
        if single is not None and not math.isclose(predictions[0], single, rel_tol=1e-6, abs_tol=1e-9):
            raise SmokeFailure(f"batch: the first record's {predictions[0]} differs from the single {single}")

    def bad_request(self) -> None:
        missing = {k: v for k, v in example_record().items() if k != FEATURE_NAMES[0]}
        resp = self.call("POST", "/predict", missing)
        if not 400 <= resp.status < 500:
            raise SmokeFailure(
                f"bad request: a record without {FEATURE_NAMES[0]!r} got HTTP {resp.status}, expected 4xx"
            )
        error = resp.data.get("error") if isinstance(resp.data, dict) else None
        if not isinstance(error, dict) or not {"code", "message", "details"} <= error.keys():
            raise SmokeFailure(
                "bad request: expected a JSON body {'error': {code, message, details}}, "
                f"got {resp.text[:160]!r}"
            )
        code = error["code"]
        # the contract (service/errors.py): code is the HTTP status as an integer, never a string
        if isinstance(code, bool) or not isinstance(code, int) or code != resp.status:
            raise SmokeFailure(
                f"bad request: error.code should be the integer status {resp.status}, got {code!r}"
            )
        details = error["details"]
        fields = (
            {d.get("field") for d in details if isinstance(d, dict)} if isinstance(details, list) else set()
        )
        if FEATURE_NAMES[0] not in fields:
            raise SmokeFailure(
                f"bad request: the error details do not name {FEATURE_NAMES[0]!r}: {details!r:.160}"
            )

    def checks(self) -> list[tuple[str, Callable[[], None]]]:
        return [
            ("ready", self.ready),
            ("identity", self.identity),
            ("predict", self.predict_one),
            ("batch", self.predict_batch),
            ("bad request", self.bad_request),
        ]


def run(settings: SmokeOptions, out=sys.stdout, err=sys.stderr) -> int:
    """Run every check; print one line per failure to `err`. Returns the exit status."""
    started = time.monotonic()
    try:
        wait_for_health(settings)
    except SmokeFailure as failure:
        print(f"FAIL {failure}", file=err)
        return 1
    print(f"ok   health ({time.monotonic() - started:.1f}s)", file=out)
    failures = 0
    for name, check in Smoke(settings).checks():
        try:
            check()
        except SmokeFailure as failure:
            failures += 1
            print(f"FAIL {failure}", file=err)
        else:
            print(f"ok   {name}", file=out)
    if failures:
        print(f"smoke: {failures} check(s) failed against {settings.url}", file=err)
        return 1
    print(f"smoke: all checks passed against {settings.url}", file=out)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> SmokeOptions:
    """Read the command line into SmokeOptions; a URL that is not http(s) is a usage error."""
    parser = argparse.ArgumentParser(prog="python -m smoke", description=__doc__.splitlines()[0])
    parser.add_argument("url", help="base URL of the service, e.g. http://1.2.3.4")
    parser.add_argument("--wait", type=float, default=SmokeOptions.wait, help="seconds to wait for /health")
    parser.add_argument("--interval", type=float, default=SmokeOptions.interval, help="seconds between tries")
    parser.add_argument("--timeout", type=float, default=SmokeOptions.timeout, help="seconds per request")
    parser.add_argument(
        "--expect-model-version", metavar="V", help="fail unless /ready names this model_version"
    )
    parser.add_argument("--expect-revision", metavar="R", help="fail unless /ready names this revision")
    parser.add_argument(
        "--samples", type=int, default=SmokeOptions.samples, help="/ready answers to check for identity"
    )
    args = parser.parse_args(argv)
    parts = urllib.parse.urlsplit(args.url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        parser.error(f"URL must be http:// or https:// with a host, got {args.url!r}")
    if args.wait <= 0 or args.interval < 0 or args.timeout <= 0:
        parser.error("--wait and --timeout must be positive, --interval not negative")
    if not 1 <= args.samples <= 10_000:
        parser.error(f"--samples must be from 1 to 10000, got {args.samples}")
    return SmokeOptions(
        args.url.rstrip("/"),
        args.wait,
        args.interval,
        args.timeout,
        expect_model_version=args.expect_model_version or None,
        expect_revision=args.expect_revision or None,
        samples=args.samples,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The command's entry point."""
    return run(parse_args(argv))
