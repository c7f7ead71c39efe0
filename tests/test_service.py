"""The API contract, exercised through Flask's test client."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
from openapi_spec_validator import validate

from model.schema import FEATURE_NAMES, FEATURES, example_record
from service.predictor import LoadedModel


def record(**changes):
    """The example record with some fields changed (None deletes a field)."""
    rec = example_record()
    for key, value in changes.items():
        if value is None:
            rec.pop(key, None)
        else:
            rec[key] = value
    return rec


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    return client.post("/predict", data=data, content_type=content_type)


def fields(response) -> list[str]:
    return [d["field"] for d in response.get_json()["error"]["details"]]


def assert_error_shape(response, status):
    assert response.status_code == status
    assert response.mimetype == "application/json"
    error = response.get_json()["error"]
    assert error["code"] == status
    assert isinstance(error["message"], str)
    assert error["message"]
    for detail in error["details"]:
        assert set(detail) == {"field", "reason"}
    assert "Traceback" not in response.get_data(as_text=True)


def reference_predictions(model_dir, records) -> np.ndarray:
    """The trained model's own answer, without the serving path: features + LightGBM's predict.

    The service walks a compiled copy of the trees (forest.so); the artifact keeps LightGBM's text
    dump for audits, so this is an independent reading of the same trained model.
    """
    import lightgbm as lgb

    from model.features import FeatureTransformer
    from model.train import AUDIT_FILE

    X = np.array([[r[n] for n in FEATURE_NAMES] for r in records], dtype=np.float64)
    booster = lgb.Booster(model_file=str(model_dir / AUDIT_FILE))
    return booster.predict(FeatureTransformer.load(model_dir).transform(X))


def test_predict_one_record_matches_the_model(client, trained_model_dir):
    response = post(client, example_record())
    assert response.status_code == 200
    body = response.get_json()
    expected = reference_predictions(trained_model_dir, [example_record()])[0]
    assert body["prediction"] == pytest.approx(expected, abs=1e-9)
    assert body["price_usd"] == pytest.approx(expected * 100_000, abs=0.01)
    assert body["model_version"] == LoadedModel.load(trained_model_dir).version
    assert 1.0 < body["prediction"] < 5.1  # a Berkeley block group is expensive


def test_a_batch_matches_the_model_record_by_record(client, trained_model_dir):
    records = [record(MedInc=m, Latitude=lat) for m, lat in ((1.0, 34.05), (9.0, 37.88), (3.0, 36.7))]
    body = post(client, {"instances": records}).get_json()
    assert body["predictions"] == pytest.approx(reference_predictions(trained_model_dir, records), abs=1e-9)


def test_batch_keeps_input_order_and_equals_single_predictions(client):
    records = [record(MedInc=m) for m in (1.0, 9.0, 3.0, 15.0)]
    batch = post(client, {"instances": records}).get_json()
    singles = [post(client, r).get_json()["prediction"] for r in records]
    assert batch["predictions"] == pytest.approx(singles, abs=1e-12)
    assert len(batch["prices_usd"]) == 4
    assert batch["predictions"][1] > batch["predictions"][0]


def test_integers_are_accepted_as_numbers(client):
    assert post(client, record(HouseAge=41, Population=322)).status_code == 200


@pytest.mark.parametrize(
    ("payload", "status", "field"),
    [
        (record(MedInc=None), 400, "MedInc"),
        ({**example_record(), "Rooms": 3}, 400, "Rooms"),
        (record(MedInc="8.3"), 400, "MedInc"),
        (record(HouseAge=True), 400, "HouseAge"),
        (record(AveRooms=None) | {"AveRooms": None}, 400, "AveRooms"),
        (record(Population={"n": 1}), 400, "Population"),
        (record(AveOccup=[2.5]), 400, "AveOccup"),
        (record(Population=-1), 422, "Population"),
        (record(HouseAge=-5), 422, "HouseAge"),
        (record(Latitude=51.5), 422, "Latitude"),
        (record(Longitude=-0.12), 422, "Longitude"),
        (record(MedInc=1e9), 422, "MedInc"),
        ({"instances": []}, 400, "instances"),
        ({"instances": {}}, 400, "instances"),
        ({"instances": [example_record()], "extra": 1}, 400, "extra"),
        ({"instances": [example_record(), record(AveBedrms=None)]}, 400, "instances[1].AveBedrms"),
        ({"instances": [example_record(), 7]}, 400, "instances[1]"),
        ({"instances": [record(Latitude=10.0)]}, 422, "instances[0].Latitude"),
        ({"instances": [example_record()] * 51}, 413, "instances"),
        ([example_record()], 400, "body"),
        ("a string", 400, "body"),
    ],
)
def test_bad_input_gets_its_status_and_names_the_field(client, payload, status, field):
    response = post(client, payload)
    assert_error_shape(response, status)
    assert field in fields(response)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"MedInc": NaN}', "MedInc"),
        ('{"MedInc": Infinity}', "MedInc"),
        ('{"MedInc": -Infinity}', "MedInc"),
        ('{"MedInc": 1e400}', "MedInc"),
        ('{"MedInc": ' + "9" * 400 + "}", "MedInc"),
    ],
)
def test_non_finite_numbers_are_400_naming_the_field(client, raw, field):
    body = json.loads(json.dumps(example_record()))
    text = json.dumps(body).replace('"MedInc": 8.3252', raw[1:-1])
    response = post(client, text)
    assert_error_shape(response, 400)
    assert fields(response) == [field]


LONG = "9" * 5000  # past CPython's int-parsing limit (4,300 digits): json.loads raises ValueError
VALID = json.dumps(example_record())
WITH_LONG_MEDINC = VALID.replace('"MedInc": 8.3252', '"MedInc": ' + LONG)
WITH_NEGATIVE_LONG_MEDINC = VALID.replace('"MedInc": 8.3252', '"MedInc": -' + LONG)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        (WITH_LONG_MEDINC, "MedInc", "must be a finite number"),
        (WITH_NEGATIVE_LONG_MEDINC, "MedInc", "must be a finite number"),
        (
            "{" + f'"instances": [{VALID}, {WITH_LONG_MEDINC}]' + "}",
            "instances[1].MedInc",
            "must be a finite number",
        ),
        (VALID[:-1] + ', "Bogus": ' + LONG + "}", "Bogus", "is not a feature of this model"),
    ],
    ids=["record", "negative", "batch", "unknown-key"],
)
def test_a_number_literal_past_the_int_parsing_limit_is_a_400_naming_its_field(client, text, field, reason):
    assert LONG in text
    response = post(client, text)
    assert_error_shape(response, 400)
    assert {d["field"]: d["reason"] for d in response.get_json()["error"]["details"]} == {field: reason}


def test_every_bad_field_is_listed_not_only_the_first(client):
    response = post(client, record(MedInc="x", HouseAge=None, Latitude=True) | {"Bogus": 1})
    assert_error_shape(response, 400)
    assert set(fields(response)) == {"MedInc", "HouseAge", "Latitude", "Bogus"}


def test_a_400_also_lists_the_out_of_range_values(client):
    response = post(client, record(MedInc="x", Population=-1))
    assert_error_shape(response, 400)
    assert set(fields(response)) == {"MedInc", "Population"}


def test_a_huge_batch_of_garbage_gets_a_bounded_list_of_details(app):
    app.config["MAX_BATCH"] = 10_000
    response = post(app.test_client(), {"instances": [{"MedInc": "x"}] * 2000})
    assert_error_shape(response, 400)
    details = response.get_json()["error"]["details"]
    assert len(details) == 101
    # each record lacks 7 features and has a string for the 8th: 8 problems each, 100 listed
    assert details[-1] == {"field": "body", "reason": f"{2000 * 8 - 100} more problems not listed"}


def test_a_422_with_more_than_100_problems_counts_the_ones_it_left_out(app):
    app.config.update(MAX_BATCH=10_000, MAX_CONTENT_LENGTH=1 << 20)
    response = post(app.test_client(), {"instances": [record(Latitude=60.0, Longitude=0.0)] * 1500})
    assert_error_shape(response, 422)
    details = response.get_json()["error"]["details"]
    assert len(details) == 101
    assert details[-1] == {"field": "body", "reason": f"{1500 * 2 - 100} more problems not listed"}


def test_all_out_of_range_fields_are_listed_with_the_allowed_range(client):
    response = post(client, record(Population=-1, Latitude=60.0))
    assert_error_shape(response, 422)
    details = {d["field"]: d["reason"] for d in response.get_json()["error"]["details"]}
    assert set(details) == {"Population", "Latitude"}
    assert "between 32 and 42.5" in details["Latitude"]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"{'MedInc': 1}",
        b"\xff\xfe\x00garbage",
        b'{"\xffMedInc": 1}',
        b"[" * 100_000 + b"]" * 100_000,
    ],
    ids=["empty", "truncated", "single-quotes", "invalid-utf8", "invalid-utf8-in-a-key", "deep-nesting"],
)
def test_malformed_bodies_are_400(app, raw):
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    response = post(app.test_client(), raw)
    assert_error_shape(response, 400)
    assert fields(response) == ["body"]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_a_body_that_is_not_declared_json_is_415(client, content_type):
    response = post(client, json.dumps(example_record()), content_type=content_type)
    assert_error_shape(response, 415)
    assert fields(response) == ["Content-Type"]


def test_a_body_over_the_size_limit_is_413(client):
    response = post(client, b'{"pad": "' + b"x" * (70 * 1024) + b'"}')
    assert_error_shape(response, 413)


def test_unknown_route_is_404_and_wrong_method_is_405(client):
    assert_error_shape(client.get("/nope"), 404)
    response = client.get("/predict")
    assert_error_shape(response, 405)
    assert "POST" in response.headers["Allow"]


def test_a_failure_inside_the_model_is_a_500_without_internals(app):
    class Broken:
        version = "x"
        metadata = None

        def predict(self, X):
            raise RuntimeError("secret internal detail /etc/passwd")

        def self_test(self):
            return True

    app.extensions["predictor"] = Broken()
    response = post(app.test_client(), example_record())
    assert_error_shape(response, 500)
    assert "secret" not in response.get_data(as_text=True)
    assert response.get_json()["error"]["message"] == "internal error"


def test_health_is_ok(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}


def test_ready_reports_the_model_version(client, trained_model_dir):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "model_version": LoadedModel.load(trained_model_dir).version,
        "revision": "unknown",  # no GIT_REVISION here; the image sets it (tests/docker/test_build.py)
    }


def test_ready_is_503_when_the_self_test_fails(app):
    app.extensions["predictor"].self_test = lambda: False
    assert_error_shape(app.test_client().get("/ready"), 503)


def test_metadata_is_the_artifacts(client, trained_model_dir):
    body = client.get("/metadata").get_json()
    assert body == {**LoadedModel.load(trained_model_dir).metadata, "revision": "unknown"}


def test_metrics_count_requests_and_predictions(client):
    post(client, {"instances": [example_record()] * 3})
    client.get("/nope")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'http_requests_total{method="POST",route="/predict",status="200"} 1.0' in text
    assert 'route="<unmatched>",status="404"' in text
    assert "predictions_total 3.0" in text
    assert "http_request_duration_seconds_bucket" in text


def test_metrics_label_a_made_up_method_as_other(client):
    for method in ("BREW", "XYZZY", "GET"):
        client.open("/health", method=method)
    text = client.get("/metrics").get_data(as_text=True)
    methods = set(re.findall(r'http_requests_total\{method="([^"]*)"', text))
    assert methods == {"GET", "OTHER"}


def test_openapi_document_is_valid_and_describes_every_route(client, app):
    doc = client.get("/openapi.json").get_json()
    validate(doc)
    # Flask writes a path parameter <name> (or <converter:name>); OpenAPI writes it {name}
    rules = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule)
        for r in app.url_map.iter_rules()
        if r.endpoint != "static"
    }
    assert rules == set(doc["paths"])
    record_schema = doc["components"]["schemas"]["Record"]
    assert list(record_schema["properties"]) == list(FEATURE_NAMES)
    assert record_schema["properties"]["Latitude"]["minimum"] == 32.0


def test_playground_page_has_a_field_per_feature_prefilled(client):
    response = client.get("/")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for feature in FEATURES:
        assert f'name="{feature.name}"' in html
        assert f'value="{feature.example}"' in html
    assert client.get("/static/app.js").status_code == 200


def test_each_request_writes_one_json_access_line_with_its_request_id(client):
    lines: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = lines.append
    access = logging.getLogger("service.access")
    access.addHandler(handler)
    try:
        response = client.post("/predict", json=example_record(), headers={"X-Request-ID": "abc-123"})
    finally:
        access.removeHandler(handler)
    assert response.headers["X-Request-ID"] == "abc-123"
    assert len(lines) == 1
    fields_ = lines[0].fields
    assert fields_["method"] == "POST"
    assert fields_["path"] == "/predict"
    assert fields_["status"] == 200
    assert fields_["request_id"] == "abc-123"
    assert fields_["duration_ms"] >= 0
    from service.access_log import JsonFormatter

    assert json.loads(JsonFormatter().format(lines[0]))["request_id"] == "abc-123"


def test_an_unsafe_request_id_is_replaced(client):
    response = client.get("/health", headers={"X-Request-ID": "bad id <script>"})
    assert response.headers["X-Request-ID"] != "bad id <script>"
    assert len(response.headers["X-Request-ID"]) == 32


def test_the_api_keeps_its_wording_for_a_string_in_a_number_field(client):
    # API clients get the JSON type they sent; the playground words it for people (tests/test_browser.py)
    response = post(client, record(MedInc="abc"))
    assert response.status_code == 400
    assert response.get_json()["error"]["details"] == [
        {"field": "MedInc", "reason": "must be a JSON number, got string"}
    ]
