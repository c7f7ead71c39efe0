"""What every error answer must look like, checked the same way by every fuzz test."""

from __future__ import annotations

import json
from typing import Any

ERROR_KEYS = {"code", "message", "details"}


def error_fields(status: int, content_type: str, raw: bytes) -> list[str]:
    """Check a 4xx body has the service's JSON error shape; return the fields its details name.

    Raises:
        AssertionError: Not JSON, or not `{"error": {"code", "message", "details": [{field, reason}]}}`.
    """
    assert 400 <= status < 500, f"not a 4xx: {status}"
    assert content_type.split(";")[0].strip() == "application/json", f"{status} sent as {content_type!r}"
    body: Any = json.loads(raw)
    assert isinstance(body, dict), body
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_KEYS, error
    assert error["code"] == status, error
    assert isinstance(error["message"], str), error
    assert error["message"], error
    assert isinstance(error["details"], list), error
    fields = []
    for detail in error["details"]:
        assert set(detail) == {"field", "reason"}, detail
        # a field may be "" when the body has a key "" (it is named as sent: an unknown key)
        assert isinstance(detail["field"], str), detail
        assert isinstance(detail["reason"], str), detail
        assert detail["reason"], detail
        fields.append(detail["field"])
    return fields


# The statuses whose cause is a part of the request a client can fix, so the answer must name it.
# 404 (no such path) and 405 (wrong method) have no field; the status and message say it all.
NAMES_A_FIELD = {400, 413, 415, 422}
