"""What fuzzing found, pinned as plain tests so it stays fixed whatever the fuzzers draw next."""

from __future__ import annotations

import json

import pytest

from model.schema import example_record
from tests.reliability.oracle import error_fields


def _batch(*records: dict | str) -> bytes:
    parts = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return ('{"instances": [' + ", ".join(parts) + "]}").encode()


def _without(name: str) -> dict:
    record = example_record()
    del record[name]
    return record


COMPLETE_WITH_NAN = json.dumps(example_record()).replace("-122.23", "NaN")


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        # A complete record takes the validator's fast lane; its NaN was dropped from the answer
        # whenever another record in the batch had a missing field.
        pytest.param(
            _batch(COMPLETE_WITH_NAN, _without("MedInc")),
            {"instances[0].Longitude", "instances[1].MedInc"},
            id="nan-in-a-complete-record-beside-a-missing-field",
        ),
        # Likewise an out-of-range value, though a 400 promises to list those too.
        pytest.param(
            _batch({**example_record(), "Latitude": 60.0}, {**example_record(), "HouseAge": "old"}),
            {"instances[0].Latitude", "instances[1].HouseAge"},
            id="out-of-range-in-a-complete-record-beside-a-wrong-type",
        ),
    ],
)
def test_a_400_for_a_batch_names_every_bad_field_of_every_record(client, body: bytes, fields: set[str]):
    answer = client.post("/predict", data=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    named = set(error_fields(400, answer.content_type, answer.get_data()))
    assert fields <= named, answer.get_json()


def test_huge_batches_and_bodies_over_http_are_413s_naming_what_to_shrink(live_server):
    # The real server with its default limits (MAX_BATCH=10000, MAX_BODY_BYTES=8 MiB).
    import requests

    record = json.dumps(example_record())
    cases = [
        ('{"instances": [' + ", ".join([record] * 10_001) + "]}", "instances"),
        # a body over the byte limit was a 413 naming nothing; it now names the body
        ('{"instances": [' + ", ".join([record] * 60_000) + "]}", "body"),
    ]
    for body, field in cases:
        answer = requests.post(
            f"{live_server.url}/predict", data=body, headers={"Content-Type": "application/json"}, timeout=60
        )
        assert answer.status_code == 413
        assert field in error_fields(413, answer.headers["Content-Type"], answer.content)
