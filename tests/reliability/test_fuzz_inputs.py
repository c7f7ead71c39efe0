"""Property-based fuzzing of /predict with strategies of our own, against the real app in process.

Each generated request carries its own oracle: the strategy knows which fields it broke and how, so
the test asserts the exact status (200, 400, 413, 415, 422) and that every broken field is named,
not merely that nothing crashed. The app is the real one (create_app over a trained model) with a
batch limit of 50, so oversized batches stay cheap; tests/reliability/test_fuzz_openapi.py and the
protocol tests below go through gunicorn over HTTP.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import pytest
from hypothesis import find, given
from hypothesis import strategies as st

from model.schema import FEATURE_NAMES, FEATURES, Feature, example_record
from tests.reliability.oracle import NAMES_A_FIELD, error_fields

MAX_BATCH = 50
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_app(trained_model_dir):
    """The real app over the session's model; MAX_BATCH=50, the default 8 MiB body limit, access log off."""
    from threadpoolctl import threadpool_limits

    from service import create_app
    from service.config import ServiceSettings

    app = create_app(
        {"SETTINGS": ServiceSettings(model_dir=trained_model_dir, max_batch=MAX_BATCH, log_level="WARNING")}
    )
    # One native thread, as in a gunicorn worker (service/gunicorn_conf.py): on two busy cores the
    # default pool makes each prediction a hundred times slower.
    with threadpool_limits(1):
        yield app


# ---------------------------------------------------------------- values, each with what it should cause


@dataclass(frozen=True)
class Value:
    """A JSON fragment for one field, and what the service must make of it: ok, range or type."""

    text: str
    verdict: str  # "ok" | "range" (422 unless something else is a 400) | "type" (400)


def _num(x: float | int) -> str:
    return json.dumps(x)


def in_range(feature: Feature) -> st.SearchStrategy[Value]:
    """Valid numbers: floats and integers inside the domain, its bounds, subnormals, -0.0."""
    floats = st.floats(feature.minimum, feature.maximum, allow_nan=False)
    ints = st.integers(math.ceil(feature.minimum), math.floor(feature.maximum))
    edges = st.sampled_from([feature.minimum, feature.maximum, feature.example])
    extra = [5e-324, -0.0, 0.0] if feature.minimum <= 0 <= feature.maximum else []
    return st.one_of(floats, ints, edges, st.sampled_from(extra or [feature.example])).map(
        lambda x: Value(_num(x), "ok")
    )


def out_of_range(feature: Feature) -> st.SearchStrategy[Value]:
    """Finite numbers outside the domain: just past a bound, huge, tiny negatives, 1e308."""
    below = st.floats(max_value=feature.minimum, exclude_max=True, allow_nan=False, allow_infinity=False)
    above = st.floats(min_value=feature.maximum, exclude_min=True, allow_nan=False, allow_infinity=False)
    ints = st.one_of(
        st.integers(max_value=math.ceil(feature.minimum) - 1, min_value=-(10**300)),
        st.integers(min_value=math.floor(feature.maximum) + 1, max_value=10**300),
    )
    fixed = [1e308, -1e308, feature.maximum * 10 + 1]
    if feature.minimum >= 0:
        fixed += [-5e-324, -1e-300]
    return st.one_of(below, above, ints, st.sampled_from(fixed)).map(lambda x: Value(_num(x), "range"))


NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1E400", str(10**400), "-" + str(10**400)]


def wrong_type() -> st.SearchStrategy[Value]:
    """Everything that is not a finite JSON number: NaN/Infinity spellings, strings, nested values."""
    scalars = st.one_of(
        st.sampled_from(NON_FINITE),  # non-finite tokens Python's json accepts, and overflowing literals
        st.sampled_from(['"NaN"', '"Infinity"', '"inf"', '"1e3"', '"8.3"', '""']).map(str),
        st.text(max_size=20).map(json.dumps),
        st.sampled_from(["true", "false", "null", "[]", "{}", "[1]", '{"value": 1}']),
    )
    depth = st.integers(1, 40)
    nested = depth.map(lambda d: "[" * d + "1" + "]" * d)
    return st.one_of(scalars, nested).map(lambda text: Value(text, "type"))


# Past CPython's int-parsing limit (sys.get_int_max_str_digits(), 4,300 digits by default), and far
# past it: json.loads refuses to convert such an integer literal with a ValueError of its own.
LONG_DIGITS = st.integers(4_000, 20_000)


@st.composite
def extreme_literal(draw: st.DrawFn, feature: Feature) -> Value:
    """A JSON number literal thousands of characters long, in each of JSON's number forms.

    The verdict follows from the number the literal denotes (Python's float() of the text, correctly
    rounded like json.loads): infinite is a type problem, finite is ok or out of range.
    """
    digits = draw(LONG_DIGITS)
    sign = draw(st.sampled_from(["", "-"]))
    lead = draw(st.sampled_from("123456789"))
    forms = ["int", "fraction", "small_fraction", "exponent", "negative_exponent", "mixed"]
    form = draw(st.sampled_from(forms))
    if form == "int":  # 10^digits: an integer no float holds
        text = sign + lead + "0" * digits
    elif form == "fraction":  # a long mantissa of a moderate number
        text = sign + lead + "." + "3" * digits
    elif form == "small_fraction":  # 0.000...0d: rounds to a tiny float or to zero
        text = sign + "0." + "0" * digits + lead
    elif form == "exponent":  # an exponent thousands of digits long: infinite
        text = sign + "1" + draw(st.sampled_from(["e", "E", "e+", "E+"])) + lead + "0" * digits
    elif form == "negative_exponent":  # ... and negative: zero
        text = sign + "1e-" + lead + "0" * digits
    else:  # a long integer part, a long fraction and an exponent
        text = sign + lead + "5" * digits + "." + "5" * digits + "e-" + str(digits)
    number = float(text)
    if not math.isfinite(number):
        return Value(text, "type")
    return Value(text, "ok" if feature.admits(number) else "range")


@dataclass
class Record:
    """One record as JSON text, and the fields the service must name with their verdicts."""

    text: str
    problems: dict[str, str] = field(default_factory=dict)  # field -> "range" | "type"


@st.composite
def records(draw: st.DrawFn, prefix: str = "") -> Record:
    """A record with some fields valid, some missing, out of range, of the wrong type, plus extras."""
    parts: list[str] = []
    problems: dict[str, str] = {}
    for feature in FEATURES:
        kind = draw(st.sampled_from(["ok"] * 6 + ["missing", "range", "type", "extreme"]))
        if kind == "missing":
            problems[prefix + feature.name] = "type"
            continue
        strategy = {"ok": in_range, "range": out_of_range, "extreme": extreme_literal}.get(kind)
        value = draw(strategy(feature) if strategy else wrong_type())
        if value.verdict != "ok":
            problems[prefix + feature.name] = value.verdict
        parts.append(f"{json.dumps(feature.name)}: {value.text}")
    extras = draw(st.lists(st.text(min_size=1, max_size=12), max_size=3, unique=True))
    for key in extras:
        if key in FEATURE_NAMES:
            continue
        # an unknown key is named whatever its value, an endless number literal included
        extra_value = draw(st.sampled_from(["1", "null", '"x"', "9" * 5000, "-1" + "0" * 5000]))
        parts.append(f"{json.dumps(key)}: {extra_value}")
        problems[prefix + key] = "type"
    order = draw(st.permutations(parts))
    return Record("{" + ", ".join(order) + "}", problems)


def valid_record_text() -> str:
    return json.dumps(example_record())


@dataclass
class Request:
    """A request body with the status it must get and the fields the answer must name."""

    body: bytes
    status: int
    fields: set[str]
    any_of: set[str] = field(default_factory=set)  # at least one of these must be named
    content_type: str = "application/json"


def _expect(problems: dict[str, str]) -> tuple[int, set[str]]:
    if any(v == "type" for v in problems.values()):
        return 400, set(problems)  # a 400 lists the out-of-range values too
    if problems:
        return 422, set(problems)
    return 200, set()


@st.composite
def single_requests(draw: st.DrawFn) -> Request:
    record = draw(records())
    status, fields = _expect(record.problems)
    return Request(record.text.encode(), status, fields)


@st.composite
def batch_requests(draw: st.DrawFn) -> Request:
    """Batches: good and bad records, non-object items, extra keys, empty and oversized batches."""
    shapes = ["records"] * 6 + ["non_object", "extra_key", "not_a_list", "empty", "over"]
    shape = draw(st.sampled_from(shapes))
    if shape == "not_a_list":
        value = draw(st.sampled_from(["{}", "1", '"x"', "null", "true", valid_record_text()]))
        return Request(f'{{"instances": {value}}}'.encode(), 400, {"instances"})
    if shape == "empty":
        return Request(b'{"instances": []}', 400, {"instances"})
    if shape == "over":
        count = draw(st.integers(MAX_BATCH + 1, MAX_BATCH + 20))
        body = '{"instances": [' + ", ".join([valid_record_text()] * count) + "]}"
        return Request(body.encode(), 413, {"instances"})
    size = draw(st.integers(1, 5))
    items: list[str] = []
    problems: dict[str, str] = {}
    for i in range(size):
        prefix = f"instances[{i}]."
        if shape == "non_object" and draw(st.booleans()):
            items.append(draw(st.sampled_from(["1", "null", '"record"', "[]", "[1, 2]", "true"])))
            problems[f"instances[{i}]"] = "type"
            continue
        record = draw(records(prefix))
        items.append(record.text)
        problems.update(record.problems)
    body = '{"instances": [' + ", ".join(items) + "]"
    if shape == "extra_key":
        key = draw(st.text(min_size=1, max_size=10).filter(lambda k: k != "instances"))
        body += f", {json.dumps(key)}: 1"
        # keys beside instances are reported before the records are looked at
        return Request((body + "}").encode(), 400, {key})
    status, fields = _expect(problems)
    return Request((body + "}").encode(), status, fields)


def _parses(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


@st.composite
def garbage_bodies(draw: st.DrawFn) -> Request:
    """Bodies that are not a record at all: other JSON types, broken JSON, deep nesting, bad UTF-8."""
    kind = draw(st.sampled_from(["json_non_object", "broken", "deep", "deep_field", "bad_utf8", "bom"]))
    if kind == "json_non_object":
        text = draw(st.sampled_from(["[]", "1", '"x"', "null", "true", "[" + valid_record_text() + "]"]))
        return Request(text.encode(), 400, {"body"})
    if kind == "broken":
        cut = draw(st.integers(0, len(valid_record_text()) - 1))
        junk = draw(st.sampled_from(["", "}", "{", ",", "\x00", "'", "NaN("]))
        text = valid_record_text()[:cut] + junk
        if _parses(text):  # e.g. "{" + "}": valid JSON after all, so break it for sure
            text += "\x00"
        return Request(text.encode(), 400, {"body"})
    if kind == "deep":
        depth = draw(st.integers(100, 200_000))
        # too deep to parse: the body is named; parsed: an array is not a record (body again)
        opener, closer = draw(st.sampled_from([("[", "]"), ("[{}, ", "]")]))
        return Request((opener * depth + "1" + closer * depth).encode(), 400, {"body"})
    if kind == "deep_field":
        depth = draw(st.integers(100, 200_000))
        record = example_record()
        nested = "[" * depth + "1" + "]" * depth
        text = valid_record_text().replace(json.dumps(record["MedInc"]), nested, 1)
        # parsed, MedInc is an array; too deep to parse, the body is what is wrong
        return Request(text.encode(), 400, set(), any_of={"MedInc", "body"})
    if kind == "bom":
        return Request(b"\xef\xbb\xbf" + valid_record_text().encode(), 400, {"body"})
    raw = bytearray(valid_record_text().encode())
    position = draw(st.integers(0, len(raw)))
    bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf8\x88\x80\x80\x80"]))
    return Request(bytes(raw[:position] + bad + raw[position:]), 400, {"body"})


def check(client, request: Request) -> None:
    answer = client.post("/predict", data=request.body, headers={"Content-Type": request.content_type})
    assert answer.status_code == request.status, (request.body[:300], answer.get_data()[:600])
    if request.status == 200:
        body = answer.get_json()
        predictions = body["predictions"] if "predictions" in body else [body["prediction"]]
        assert all(math.isfinite(p) for p in predictions), body
        return
    named = set(error_fields(answer.status_code, answer.content_type, answer.get_data()))
    missing = request.fields - named
    assert not missing, f"unnamed: {sorted(missing)} in {answer.get_data()[:500]!r} ({request.body[:99]!r})"
    assert not request.any_of or request.any_of & named, (request.any_of, answer.get_data()[:600])


def test_fuzzed_records_get_the_right_status_and_name_every_bad_field(fuzz_app, fuzz, fuzz_counter):
    client = fuzz_app.test_client()

    @fuzz.settings(cases=600)
    @given(request=single_requests())
    def run(request: Request) -> None:
        fuzz_counter.count("records")
        check(client, request)

    run()


def test_fuzzed_batches_get_the_right_status_and_name_every_bad_field(fuzz_app, fuzz, fuzz_counter):
    client = fuzz_app.test_client()

    @fuzz.settings(cases=400)
    @given(request=batch_requests())
    def run(request: Request) -> None:
        fuzz_counter.count("batches")
        check(client, request)

    run()


def test_garbage_bodies_are_400s_naming_the_body(fuzz_app, fuzz, fuzz_counter):
    client = fuzz_app.test_client()

    @fuzz.settings(cases=200)
    @given(request=garbage_bodies())
    def run(request: Request) -> None:
        fuzz_counter.count("garbage")
        check(client, request)

    run()


JSON_TYPES = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/problem+json", "APPLICATION/JSON"]
)
OTHER_TYPES = st.one_of(
    st.sampled_from(
        [
            "text/plain",
            "text/json",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/xml",
            "application/jsonx",
            "json",
            "",
        ]
    ),
    st.from_regex(r"[a-z]{1,8}/[a-z0-9.+-]{1,12}", fullmatch=True).filter(
        lambda t: t != "application/json" and not (t.startswith("application/") and t.endswith("+json"))
    ),
)


@st.composite
def content_type_requests(draw: st.DrawFn) -> Request:
    """A valid record sent as JSON (any spelling of it: 200) or as anything else (415)."""
    body = valid_record_text().encode()
    if draw(st.booleans()):
        return Request(body, 200, set(), content_type=draw(JSON_TYPES))
    return Request(body, 415, {"Content-Type"}, content_type=draw(OTHER_TYPES))


def test_content_types_other_than_json_are_415s_naming_the_header(fuzz_app, fuzz, fuzz_counter):
    client = fuzz_app.test_client()

    @fuzz.settings(cases=150)
    @given(request=content_type_requests())
    def run(request: Request) -> None:
        fuzz_counter.count("content types")
        check(client, request)

    run()


PATHS = ["/predict", "/health", "/ready", "/metadata", "/metrics", "/openapi.json", "/"]
ALLOWED = {"/predict": {"POST", "OPTIONS"}}


def test_wrong_methods_and_unknown_paths_get_json_405s_and_404s(fuzz_app, fuzz, fuzz_counter):
    client = fuzz_app.test_client()
    methods = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "HEAD"])
    unknown = st.from_regex(r"/[A-Za-z0-9._~%-]{1,30}", fullmatch=True).filter(lambda p: p not in PATHS)

    @fuzz.settings(cases=150)
    @given(method=methods, path=st.one_of(st.sampled_from(PATHS), unknown))
    def run(method: str, path: str) -> None:
        fuzz_counter.count("methods and paths")
        answer = client.open(path, method=method, data=valid_record_text(), content_type="application/json")
        status = answer.status_code
        assert status < 500, (method, path, answer.get_data()[:300])
        allowed = ALLOWED.get(path, {"GET", "HEAD", "OPTIONS"})
        if path not in PATHS:
            assert status == 404, (method, path, status)
        elif method not in allowed:
            assert status == 405, (method, path, status)
            assert method not in answer.headers["Allow"]
        else:
            assert status == 200, (method, path, status)
        if status >= 400 and method != "HEAD":
            error_fields(status, answer.content_type, answer.get_data())

    run()


REQUEST_STRATEGIES = {
    "records": single_requests,
    "batches": batch_requests,
    "garbage": garbage_bodies,
    "content types": content_type_requests,
}


def test_every_field_naming_status_is_covered_by_the_fuzzers(fuzz_app) -> None:
    # Every 4xx that POST /predict documents (its OpenAPI document) names a field, and the fuzzers'
    # strategies really generate each of them: a strategy that lost a status would fuzz nothing.
    responses = fuzz_app.extensions["openapi"]["paths"]["/predict"]["post"]["responses"]
    documented = {int(status) for status in responses if status.startswith("4")}
    assert documented <= NAMES_A_FIELD
    generated = st.one_of(*(strategy() for strategy in REQUEST_STRATEGIES.values()))
    for status in sorted(NAMES_A_FIELD):
        found = find(generated, lambda request, status=status: request.status == status)
        assert found.fields or found.any_of, f"a generated {status} names no field"
