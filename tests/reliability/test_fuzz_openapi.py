"""Schemathesis fuzzing from the service's own /openapi.json, over HTTP against gunicorn.

Positive /predict cases (bodies the document allows) must all be 200s that match the documented
response; negative ones (bodies the document forbids) must all be documented 4xx answers with the JSON
error shape that name a field. Every operation, either way: never a 5xx, and never a status or content
type the document does not list.
"""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import given
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.reliability.oracle import NAMES_A_FIELD, error_fields

pytestmark = pytest.mark.slow

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api(live_server):
    """The OpenAPI document as the running server serves it."""
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


@pytest.mark.parametrize(
    ("mode", "cases"), [(GenerationMode.POSITIVE, 300), (GenerationMode.NEGATIVE, 500)], ids=lambda v: str(v)
)
def test_cases_from_the_openapi_document_get_documented_answers(
    api, live_server, fuzz, fuzz_counter, mode, cases
):
    session = requests.Session()

    @fuzz.settings(cases=cases)
    @given(case=api.as_strategy(generation_mode=mode))
    def run(case) -> None:
        fuzz_counter.count(f"openapi {mode.value}")
        response = case.call(base_url=live_server.url, session=session, timeout=30)
        case.validate_response(response, checks=CHECKS)
        if mode is GenerationMode.POSITIVE and case.method == "POST":
            # a body the document allows is predicted (GETs may answer a documented 404, e.g. for
            # a report file name that does not exist: the checks above hold them to the document)
            assert response.status_code == 200, (case.body, response.text[:500])
        elif mode is GenerationMode.NEGATIVE and case.method == "POST":
            # the document forbids this body, so the service must refuse it, naming what is wrong
            assert response.status_code in NAMES_A_FIELD, (case.body, response.status_code)
            content_type = response.headers.get("content-type", [""])[0]
            fields = error_fields(response.status_code, content_type, response.content)
            assert fields, response.text[:500]

    run()
