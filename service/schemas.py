"""Request parsing and validation: JSON body -> a float64 matrix in schema order.

The feature list, order and domains come from model.schema; this module only applies them.
Type problems (missing, unknown, not a number, not finite) are 400s; values outside a feature's
domain are 422s; a batch over the limit is 413. Every bad field is listed, not only the first.

Two lanes: `parse_body` first tries msgspec, which decodes and type-checks a valid record or batch
in one pass in C; anything it does not accept at once (and every invalid request) takes the full
path below, which finds and lists every problem. The fast lane only ever answers "valid", so the
error contract is the full path's alone.
"""

from __future__ import annotations

import json
import math
from functools import cache
from typing import Any

import msgspec
import numpy as np

from model.schema import FEATURE_NAMES, FEATURES, Feature
from service.cooperative import SLICE_RECORDS, breathe
from service.errors import InvalidInput, Problem

MAX_DETAILS = 100  # a garbage batch of 10,000 records must not produce a 10,000-line answer

_N = len(FEATURE_NAMES)
_NAMES_SET = frozenset(FEATURE_NAMES)
_LOW = np.array([f.minimum for f in FEATURES])
_HIGH = np.array([f.maximum for f in FEATURES])
_BOUNDS = tuple((f.minimum, f.maximum) for f in FEATURES)


# What msgspec raises for a body it does not take as a valid record or batch: not JSON, not that shape,
# or a key that is not UTF-8 (a UnicodeDecodeError of its own). The full path then words the error.
_NOT_FAST = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


@cache
def _fast_decoders() -> tuple[msgspec.json.Decoder, msgspec.json.Decoder]:
    """msgspec decoders of exactly one record and of {"instances": [record, ...]}, built once."""
    # Every feature a float (msgspec accepts a JSON integer there, never a boolean, a string or
    # NaN/Infinity, which are not JSON), none missing, nothing else: the shape of a valid request.
    record = msgspec.defstruct(
        "Record", [(name, float) for name in FEATURE_NAMES], forbid_unknown_fields=True
    )
    batch = msgspec.defstruct("Batch", [("instances", list[record])], forbid_unknown_fields=True)
    return msgspec.json.Decoder(record), msgspec.json.Decoder(batch)


def _fast_lane(raw: bytes, max_batch: int) -> tuple[np.ndarray, bool] | None:
    """The matrix of a body that is a valid record or batch, or None to take the full path."""
    one, many = _fast_decoders()
    try:
        row = msgspec.structs.astuple(one.decode(raw))
    except _NOT_FAST:
        pass
    else:
        # NaN compares false and an overflowing literal decodes to inf: both leave the fast lane
        if all(low <= value <= high for value, (low, high) in zip(row, _BOUNDS, strict=True)):
            return np.array([row], dtype=np.float64), False
        return None
    try:
        instances = many.decode(raw).instances
    except _NOT_FAST:
        return None
    if not 1 <= len(instances) <= max_batch:
        return None  # the full path words the 400 and the 413
    astuple = msgspec.structs.astuple
    X = np.array([astuple(record) for record in instances], dtype=np.float64)
    if not ((X >= _LOW) & (X <= _HIGH)).all():
        return None
    return X, True


def parse_body(raw: bytes, max_batch: int) -> tuple[np.ndarray, bool]:
    """Decode and validate a request body: one record, or {"instances": [record, ...]}.

    Args:
        raw: The body's bytes, as sent.
        max_batch: The most records a batch may hold.

    Returns:
        The (n, 8) float64 matrix in schema order and whether the request was a batch.

    Raises:
        InvalidInput: 400/413/422 with details naming every bad field.
    """
    fast = _fast_lane(raw, max_batch)
    if fast is not None:
        return fast
    return parse_prediction_request(parse_json(raw), max_batch)


def parse_json(raw: bytes) -> Any:
    """Decode a request body as strict UTF-8 JSON.

    Raises:
        InvalidInput: 400 for bytes that are not UTF-8, text that is not JSON, or nesting
            too deep to parse.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            400, "the body is not valid UTF-8", [Problem("body", f"invalid byte at {exc.start}")]
        ) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(
            400, "the body is not valid JSON", [Problem("body", f"{exc.msg} at line {exc.lineno}")]
        ) from None
    except ValueError:
        # An integer literal longer than CPython's int-parsing limit (sys.get_int_max_str_digits,
        # 4,300 digits): valid JSON, so read it again with such literals as signed infinities, which
        # then name their field as "must be a finite number" like any other overflowing number.
        return json.loads(text, parse_int=_int_or_infinity)
    except RecursionError:
        raise InvalidInput(
            400, "the body is not valid JSON", [Problem("body", "nested too deeply")]
        ) from None


def _int_or_infinity(literal: str) -> int | float:
    try:
        return int(literal)
    except ValueError:  # too many digits to convert; far beyond any float anyway
        return -math.inf if literal.startswith("-") else math.inf


def _is_number(value: Any) -> bool:
    # bool is a subclass of int in Python, but `true` is not a number in JSON
    return type(value) is float or type(value) is int


def _range_reason(feature: Feature) -> str:
    return f"must be between {feature.minimum:g} and {feature.maximum:g} ({feature.unit})"


def _record_problems(record: Any, prefix: str) -> tuple[list[Problem], list[Problem]]:
    """Everything wrong with one record: (key and type problems, out-of-range values)."""
    if not isinstance(record, dict):
        field = prefix.rstrip(".") or "body"
        return [Problem(field, "must be a JSON object with the model's features")], []
    problems = [Problem(f"{prefix}{name}", "is required") for name in FEATURE_NAMES if name not in record]
    problems += [
        Problem(f"{prefix}{key}", "is not a feature of this model") for key in record if key not in _NAMES_SET
    ]
    out_of_range = []
    for feature in FEATURES:
        if feature.name not in record:
            continue
        value = record[feature.name]
        field = f"{prefix}{feature.name}"
        if not _is_number(value):
            problems.append(Problem(field, f"must be a JSON number, got {_json_type(value)}"))
            continue
        try:
            number = float(value)
        except OverflowError:  # an integer literal too large for a float
            number = math.inf
        if not math.isfinite(number):
            problems.append(Problem(field, "must be a finite number"))
        elif not feature.admits(number):
            out_of_range.append(Problem(field, _range_reason(feature)))
    return problems, out_of_range


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _domain_problems(X: np.ndarray, prefixes: list[str]) -> tuple[list[Problem], int]:
    """The first MAX_DETAILS out-of-range values, and how many there are in all."""
    bad_rows, bad_cols = np.nonzero((X < _LOW) | (X > _HIGH))
    shown = [
        Problem(f"{prefixes[row]}{FEATURES[col].name}", _range_reason(FEATURES[col]))
        for row, col in zip(bad_rows[:MAX_DETAILS], bad_cols[:MAX_DETAILS], strict=True)
    ]
    return shown, len(bad_rows)


def _fail(status: int, message: str, problems: list[Problem], total: int | None = None) -> InvalidInput:
    """The error listing at most MAX_DETAILS problems, then how many of `total` it left out."""
    extra = (len(problems) if total is None else total) - MAX_DETAILS
    shown = problems[:MAX_DETAILS]
    if extra > 0:
        shown.append(Problem("body", f"{extra} more problems not listed"))
    return InvalidInput(status, message, shown)


def rows_from_records(records: list[Any], prefixes: list[str]) -> np.ndarray:
    """Validate records and stack them into an (n, 8) float64 matrix in schema order.

    Raises:
        InvalidInput: 400 listing every key or type problem; else 422 for values outside
            their feature's domain.
    """
    rows: list[list[Any]] = []
    for record in records:
        # Fast lane: the shape nearly every real request has; ranges are checked below, vectorized.
        if type(record) is dict and len(record) == _N:
            try:
                row = [record[name] for name in FEATURE_NAMES]
            except KeyError:
                row = None
            if row is not None and all(_is_number(v) for v in row):
                rows.append(row)
                continue
        break  # one record off the fast lane: the request is invalid; find every problem below
    X = None
    if len(rows) == len(records):
        try:
            X = np.array(rows, dtype=np.float64)
        except OverflowError:  # an integer literal too large for a float
            X = None
    if X is None or not np.isfinite(X).all():
        # Something is wrong. Look at every record exactly: a 400 lists every bad field, and the
        # out-of-range values too, so a client fixes everything in one go.
        problems: list[Problem] = []
        out_of_range: list[Problem] = []
        for i, (record, prefix) in enumerate(zip(records, prefixes, strict=True)):
            found, outside = _record_problems(record, prefix)
            problems += found
            out_of_range += outside
            if i % SLICE_RECORDS == SLICE_RECORDS - 1:
                breathe()  # a garbage batch of 10,000 must not hold the worker's other requests
        raise _fail(400, "the request has invalid fields", problems + out_of_range)
    out_of_range, total = _domain_problems(X, prefixes)
    if out_of_range:
        raise _fail(422, "some values are outside the valid range", out_of_range, total)
    return X


def parse_prediction_request(payload: Any, max_batch: int) -> tuple[np.ndarray, bool]:
    """Turn a decoded body into a feature matrix.

    Args:
        payload: The decoded JSON: one record, or {"instances": [record, ...]}.
        max_batch: The most records a batch may hold.

    Returns:
        The (n, 8) matrix and whether the request was a batch.

    Raises:
        InvalidInput: 400/413/422 with details naming the fields.
    """
    if not isinstance(payload, dict):
        raise InvalidInput(
            400,
            "the body must be a JSON object",
            [Problem("body", 'send one record, or {"instances": [record, ...]}')],
        )
    if "instances" not in payload:
        return rows_from_records([payload], [""]), False
    extra = [Problem(key, "is not allowed beside instances") for key in payload if key != "instances"]
    instances = payload["instances"]
    if not isinstance(instances, list):
        raise InvalidInput(400, "instances must be an array", [Problem("instances", "must be a JSON array")])
    if extra:
        raise InvalidInput(400, "the request has invalid fields", extra)
    if not instances:
        raise InvalidInput(400, "the batch is empty", [Problem("instances", "must hold at least one record")])
    if len(instances) > max_batch:
        raise InvalidInput(
            413,
            "the batch is too large",
            [Problem("instances", f"holds {len(instances)} records; at most {max_batch} are accepted")],
        )
    prefixes = [f"instances[{i}]." for i in range(len(instances))]
    return rows_from_records(instances, prefixes), True
