"""Request parsing and validation: JSON body -> a float64 matrix in schema order.

The feature list, order and domains come from model.schema; this module only applies them.
Type problems (missing, unknown, not a number, not finite) are 400s; values outside a feature's
domain are 422s; a batch over the limit is 413. Every bad field is listed, not only the first.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from model.schema import FEATURE_NAMES, FEATURES, Feature
from service.errors import InvalidInput, Problem

MAX_DETAILS = 100  # a garbage batch of 10,000 records must not produce a 10,000-line answer

_N = len(FEATURE_NAMES)
_NAMES_SET = frozenset(FEATURE_NAMES)
_LOW = np.array([f.minimum for f in FEATURES])
_HIGH = np.array([f.maximum for f in FEATURES])


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
    except RecursionError:
        raise InvalidInput(
            400, "the body is not valid JSON", [Problem("body", "nested too deeply")]
        ) from None


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


def _domain_problems(X: np.ndarray, prefixes: list[str]) -> list[Problem]:
    bad_rows, bad_cols = np.nonzero((X < _LOW) | (X > _HIGH))
    return [
        Problem(f"{prefixes[row]}{FEATURES[col].name}", _range_reason(FEATURES[col]))
        for row, col in zip(bad_rows[: MAX_DETAILS + 1], bad_cols[: MAX_DETAILS + 1], strict=True)
    ]


def _fail(status: int, message: str, problems: list[Problem]) -> InvalidInput:
    extra = len(problems) - MAX_DETAILS
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
        for record, prefix in zip(records, prefixes, strict=True):
            found, outside = _record_problems(record, prefix)
            problems += found
            out_of_range += outside
        raise _fail(400, "the request has invalid fields", problems + out_of_range)
    out_of_range = _domain_problems(X, prefixes)
    if out_of_range:
        raise _fail(422, "some values are outside the valid range", out_of_range)
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
