"""Hostile input: whatever an engine posts or an admin types, no 5xx and nothing half-stored."""

# Broad fuzzing of the API (any body at all, last in this file), and beyond it: bodies that are
# valid but for one field, bodies with fields missing or added, unicode that databases cannot
# store, huge numbers, deep nesting and oversized bodies; and the destination form with every
# field hostile at once.

import json
import re
import string
import uuid
from decimal import Decimal

import pytest
from django.db import DatabaseError, transaction
from django.test import Client, RequestFactory
from django.urls import reverse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from destinations.forms import CUSTOM_DETAILS_MAX_BYTES, DestinationForm
from destinations.models import Delivery, Destination
from destinations.pagerduty.events import RESERVED_DETAIL_KEYS, serialize_event
from detections import api
from detections.intake import (
    ECHO_LENGTH,
    KNOWN_FIELDS,
    MAX_BODY_BYTES,
    MAX_STORED_ERROR_LENGTH,
    MAX_STORED_ERRORS,
    REQUIRED_FIELDS,
)
from detections.models import MAX_COUNT, DetectionRun
from tests.support.factories import DETECTION_NAME, RUNS_URL, post_run, run_body, stored_counts
from tests.support.fake_pagerduty import validate_event
from tests.support.routing_keys import ROUTING_KEY

EXISTING_DESTINATION = "SecOps on-call"  # the `destination` fixture's name

# Examples per property; their sum (and the parametrised cases) is the "inputs tried" figure.
ONE_FIELD_EXAMPLES = 400
MISSING_AND_EXTRA_EXAMPLES = 200
OVERSIZED_EXAMPLES = 8
FORM_EXAMPLES = 300

HYPOTHESIS = {
    "deadline": None,
    "suppress_health_check": [
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
}

pytestmark = pytest.mark.django_db


def valid_body() -> dict:
    # Every Hypothesis example of a test shares its database transaction: each needs its own run.
    return run_body(run_id=f"run-{uuid.uuid4()}")


# Strategies. Text may hold anything a JSON string can: NUL, lone surrogates, any plane.

any_character = st.characters(exclude_categories=())
EDGE_TEXT = [
    "",
    " ",
    "\t\n",
    "\x00",
    "run\x00id",
    "\ud800",
    "tail\udfff",
    "\ufeffbom",
    "\u202eevil",
    "e\u0301",
    "\U0010ffff",
    "\uffff",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ✓ 雪",
    "ß" * 255,
    "a" * 256,
    "<script>alert(1)</script>",
    "'; DROP TABLE detections_detectionrun; --",
    "%s%n%x",
    "null",
    "NaN",
]
hostile_text = st.one_of(st.text(any_character, max_size=40), st.sampled_from(EDGE_TEXT))
huge_integers = st.one_of(
    st.integers(min_value=-(10**120), max_value=10**120),
    st.sampled_from([-1, 0, MAX_COUNT, MAX_COUNT + 1, 2**64, -(2**63) - 1, 10**100, 10**101]),
)
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    huge_integers,
    st.floats(),  # NaN and infinities included: json.dumps writes them, the API must refuse them
    hostile_text,
)
junk = st.recursive(
    hostile_scalars,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=10,
)
# Junk the JSON parser accepts (finite numbers, at most 100 digits), so the fields are examined.
parseable_junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**99), max_value=10**99)
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=10,
)
moments = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.datetimes().map(lambda moment: moment.isoformat()),  # no offset: refused
    st.sampled_from(
        [
            "0001-01-01T00:00:00+14:00",  # before year 1 once in UTC
            "9999-12-31T23:59:59-14:00",  # after year 9999 once in UTC
            "2026-02-30T00:00:00Z",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01 12:00:00Z",
            "2026-05-01T12:00:00.123456789Z",
            "now",
            "",
        ]
    ),
    st.integers(min_value=0, max_value=2**40),  # an epoch number is not a date-time string
)
uuid_texts = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex.upper()),
    st.uuids().map(lambda u: f"{{{u}}}"),
    st.uuids().map(lambda u: u.urn),
    hostile_text,
)
links = st.one_of(
    st.sampled_from(
        [
            "https://app.example.com/replay/123",
            "https://ü.example/é?q=a b",
            "javascript:alert(1)",
            "ftp://example.com/x",
            "http://[::1",
            "https://" + "a" * 890 + ".com",
            "https://example.com/" + "p" * 900,
            "//example.com/relative",
        ]
    ),
    hostile_text.map(lambda text: "https://example.com/" + text),
)
FIELD_VALUES = {
    "detection_name": st.one_of(
        hostile_text,
        st.sampled_from([DETECTION_NAME.lower(), DETECTION_NAME + " ", DETECTION_NAME]),
    ),
    "detection_id": uuid_texts,
    "run_id": hostile_text,
    "run_type": st.sampled_from(["SCHEDULED", "MANUAL", "manual", "SCHEDULED ", "", "RUN\x00"]),
    "match_count": st.one_of(
        huge_integers, st.floats(), st.booleans(), st.sampled_from(["5", "0x10", 5.0, -0.0])
    ),
    "ran_at": moments,
    "range_start": moments,
    "range_end": moments,
    "match_exhaustiveness": st.sampled_from(["COMPLETED", "STOPPED_EARLY", "completed", "", 0]),
    "search_id": hostile_text,
    "trace_id": hostile_text,
    "errors": st.one_of(
        st.lists(st.one_of(hostile_text, st.dictionaries(hostile_text, junk, max_size=3))),
        st.integers(min_value=999, max_value=1001).map(lambda n: ["e"] * n),
        junk,
    ),
    "replay_link": links,
}
# Depths around the errors limit (32) and far beyond what a recursive parser survives.
DEEP = st.sampled_from([31, 32, 33, 200, 5_000, 200_000])


def encode(body: dict, how: str, *, deep: tuple[str, int] | None = None) -> bytes:
    """The body as an engine might send it: ASCII-escaped, raw UTF-8 (maybe invalid), or BOM."""
    text = json.dumps(body, ensure_ascii=how == "ascii")
    if deep is not None:
        field, depth = deep
        text = text.replace(json.dumps(f"<deep {field}>"), "[" * depth + "]" * depth)
    raw = text.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8
    return b"\xef\xbb\xbf" + raw if how == "bom" else raw


@st.composite
def one_field_wrong(draw):
    """A valid body with one field (or one extra field) replaced by something hostile."""
    body = valid_body()
    field = draw(st.sampled_from([*FIELD_VALUES, "(extra)"]))
    deep = None
    if field == "(extra)":
        field = draw(hostile_text.filter(lambda name: name not in KNOWN_FIELDS))
        body[field] = draw(junk)
    elif field in ("errors", "search_id") and draw(st.booleans()):
        deep = (field, draw(DEEP))
        body[field] = f"<deep {field}>"
    else:
        body[field] = draw(FIELD_VALUES[field])
    return body, field, encode(body, draw(st.sampled_from(["ascii", "utf-8", "bom"])), deep=deep)


def as_numbers(value):
    """A JSON value with its numbers as decimals, so 6.8e+16 and 68000000000000000 compare equal."""
    # PostgreSQL's jsonb keeps the number, not the float that wrote it: it may come back an int.
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


def bounded_error(error):
    """An error as it is stored: whole within MAX_STORED_ERROR_LENGTH, else its start and …."""
    text = error if isinstance(error, str) else json.dumps(error, ensure_ascii=False)
    if len(text) <= MAX_STORED_ERROR_LENGTH:
        return error
    return text[: MAX_STORED_ERROR_LENGTH - 1] + "…"


def echoed(name: str) -> str:
    """A field name as the API repeats it back: shortened past ECHO_LENGTH characters."""
    return name if len(name) <= ECHO_LENGTH else name[: ECHO_LENGTH - 1] + "…"


def assert_refusal_names(answer: dict, allowed: set[str]) -> None:
    assert answer["errors"], "a refusal without a reason"
    assert set(answer["errors"]) <= allowed, answer["errors"]
    for messages in answer["errors"].values():
        assert messages and all(isinstance(m, str) and m.strip() for m in messages)


@pytest.mark.slow  # hundreds of examples
@settings(max_examples=ONE_FIELD_EXAMPLES, **HYPOTHESIS)
@given(case=one_field_wrong())
def test_one_hostile_field_is_refused_by_name_or_stored_exactly(client, token, detection, case):
    body, field, raw = case
    before = stored_counts()

    response = post_run(client, raw, token)

    event(f"{response.status_code}")  # the spread shows with --hypothesis-show-statistics
    assert response.status_code in {200, 201, 400, 404}, response.content[:300]
    answer = response.json()
    if response.status_code == 400:
        # Named by the field itself, by "detection" (id/name), by range_end (an order problem),
        # or by "body" when the JSON itself was refused (NaN, depth, >100 digits, not UTF-8).
        assert_refusal_names(answer, {echoed(field), "detection", "range_end", "body"})
        assert stored_counts() == before
    elif response.status_code == 404:
        assert set(answer["errors"]) == {"detection"}
        assert stored_counts() == before
    elif response.status_code == 200:
        assert stored_counts() == before  # a repeated run_id creates nothing
    else:
        runs, deliveries = before
        pages = 2 if answer["outcome"] in ("MATCHED", "ERROR") else 0
        assert stored_counts() == (runs + 1, deliveries + pages)
        assert len(answer["deliveries"]) == pages
        run = DetectionRun.objects.get(run_id=body["run_id"])
        # What was accepted is stored exactly, unicode and all, on either database; errors
        # within their bounds (the first ones, each shortened past its limit) and their count.
        if field in ("search_id", "trace_id", "replay_link", "errors", "match_count"):
            absent = [] if field == "errors" else ""  # null for an optional field means absent
            expected = absent if body[field] is None else body[field]
            if field == "errors":
                assert run.errors_total == len(expected)
                expected = [bounded_error(error) for error in expected[:MAX_STORED_ERRORS]]
            assert as_numbers(getattr(run, field)) == as_numbers(expected)
        # And every page it queued is one PagerDuty takes: an accepted run is never undeliverable.
        for delivery in run.deliveries.all():
            raw_event = serialize_event(delivery.event, routing_key=ROUTING_KEY)
            assert validate_event(json.loads(raw_event), raw_size=len(raw_event)) == []


@st.composite
def fields_missing_and_added(draw):
    body = valid_body()
    if draw(st.booleans()):
        body["search_id"] = "s-1"
    missing = draw(st.sets(st.sampled_from(sorted(body))))
    for name in missing:
        del body[name]
    extra = draw(
        st.dictionaries(
            st.one_of(
                hostile_text,
                st.sampled_from(["run-id", "runId", "match_counts", "detectionName", "RUN_ID"]),
            ).filter(lambda name: name not in KNOWN_FIELDS),
            parseable_junk,
            max_size=4,
        )
    )
    body.update(extra)
    return body, missing, extra


@pytest.mark.slow  # hundreds of examples
@settings(max_examples=MISSING_AND_EXTRA_EXAMPLES, **HYPOTHESIS)
@given(case=fields_missing_and_added())
def test_missing_and_unknown_fields_are_each_named(client, token, detection, case):
    body, missing, extra = case
    before = stored_counts()

    response = post_run(client, encode(body, "ascii"), token)

    answer = response.json()
    if not missing - {"search_id"} and not extra:
        assert response.status_code == 201
        return
    assert response.status_code == 400, answer
    assert stored_counts() == before
    errors = answer["errors"]
    for name in missing & set(REQUIRED_FIELDS):
        assert name in errors
    if "detection_name" in missing:
        assert errors["detection"] == ["Give detection_id or detection_name."]
    for name in extra:
        assert errors[echoed(name)][-1].startswith("Unknown field.")


@settings(max_examples=OVERSIZED_EXAMPLES, **HYPOTHESIS)
@given(
    size=st.integers(min_value=MAX_BODY_BYTES + 1, max_value=MAX_BODY_BYTES + 300_000),
    shape=st.sampled_from(["whitespace", "one long string", "many errors", "deep"]),
)
def test_bodies_over_one_megabyte_are_413_and_store_nothing(client, token, detection, size, shape):
    body = valid_body()
    raw = json.dumps(body).encode()
    if shape == "whitespace":
        raw += b" " * (size - len(raw))
    elif shape == "one long string":
        body["search_id"] = ""
        raw = json.dumps(body).encode()
        body["search_id"] = "x" * (size - len(raw))
        raw = json.dumps(body).encode()
    elif shape == "many errors":
        body["errors"] = ["e" * 100] * (size // 104 + 1)
        raw = json.dumps(body).encode()
    else:
        raw = b'{"errors": ' + b"[" * (size // 2) + b"]" * (size // 2) + b"}"
    assert len(raw) > MAX_BODY_BYTES
    before = stored_counts()

    response = post_run(client, raw, token)

    assert response.status_code == 413
    assert list(response.json()["errors"]) == ["body"]
    assert stored_counts() == before


def test_a_body_of_exactly_one_megabyte_is_read_and_one_byte_more_is_413(client, token, detection):
    raw = json.dumps(valid_body()).encode()
    exact = raw + b" " * (MAX_BODY_BYTES - len(raw))

    assert post_run(client, exact, token).status_code == 201
    assert post_run(client, exact + b" ", token).status_code == 413
    assert stored_counts() == (1, 2)


@pytest.mark.parametrize(
    ("declared", "refused"),
    [
        (str(10**12), True),  # refused before a byte of the body is read
        (str(MAX_BODY_BYTES + 1), True),
        ("nonsense", False),  # read as no declared length
        ("-5", False),
    ],
)
def test_a_lying_content_length_never_reaches_a_5xx(token, detection, declared, refused):
    request = RequestFactory().post(
        RUNS_URL,
        data=json.dumps(valid_body()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    request.META["CONTENT_LENGTH"] = declared

    response = api.detection_runs(request)

    if refused:
        assert response.status_code == 413
        assert stored_counts() == (0, 0)
    else:
        assert response.status_code in (201, 400)
        assert stored_counts() in ((0, 0), (1, 2))


def test_a_failure_while_queueing_pages_leaves_no_run_behind(token, detection, monkeypatch):
    def queue_one_then_fail(run):
        Delivery.objects.create(
            destination=detection.destinations.first(),
            run=run,
            kind="trigger",
            event={},
            dedup_key="half-written",
        )
        raise DatabaseError("the disk filled up")

    monkeypatch.setattr("detections.services.enqueue_run_deliveries", queue_one_then_fail)
    client = Client(raise_request_exception=False)

    response = post_run(client, encode(valid_body(), "ascii"), token)

    assert response.status_code == 500  # an internal failure, not the input's fault
    assert stored_counts() == (0, 0)  # the run and its half-queued pages were rolled back together


# The destination form, every field hostile at once.

KEY_ALPHABET = string.ascii_letters + string.digits
valid_keys = st.text(KEY_ALPHABET, min_size=32, max_size=32)
# Each field is valid about half the time, so refusals are seen alone as well as together.
routing_keys = st.one_of(
    valid_keys,
    valid_keys,
    valid_keys,
    st.tuples(st.sampled_from(["", " ", "\t", "\n ", "\u3000"]), valid_keys).map(
        lambda pair: f"{pair[0]}{pair[1]}{pair[0]}"
    ),
    st.text(KEY_ALPHABET, min_size=31, max_size=31),
    st.text(KEY_ALPHABET, min_size=33, max_size=33),
    st.tuples(valid_keys, st.sampled_from(["-", "é", "０", "\x00", " ", "ı"])).map(
        lambda pair: pair[0][:16] + pair[1] + pair[0][17:]
    ),
    st.text(max_size=40),
)
names = st.one_of(
    st.text(min_size=1, max_size=60),
    st.text(max_size=210),
    st.sampled_from(["", "   ", "\u2003", EXISTING_DESTINATION, "a" * 200, "a" * 201, "x\x00y"]),
)
timeouts = st.one_of(
    st.integers(min_value=1, max_value=120).map(str),
    st.integers(min_value=-200, max_value=300).map(str),
    st.sampled_from(
        ["", " ", "abc", "1.5", "30.0", "1e2", " 7 ", "９", "0x10", "9" * 5000, "-0", "+5", "1_0"]
    ),
)
safe_text = st.text(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12
)
safe_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**30), 10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | safe_text,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(safe_text, children, max_size=3)
    ),
    max_leaves=8,
)
valid_details = st.dictionaries(
    safe_text.filter(lambda key: key not in RESERVED_DETAIL_KEYS), safe_values, max_size=5
)
BAD_DETAILS = [
    "[1, 2]",
    '"team"',
    "42",
    "null",
    "true",
    '{"team": "secops",}',
    "{'team': 'secops'}",
    '{"team": NaN}',
    '{"team": Infinity}',
    '{"team": 1e400}',
    '{"n": ' + "9" * 5000 + "}",
    '{"team": "a\\u0000b"}',
    '{"a\\u0000": 1}',
    '{"team": "\\ud800"}',
    '{"\\udfff": 1}',
    '{"a": ' + "[" * 32 + "]" * 32 + "}",
    '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
    '{"run_id": "mine"}',
    '{"errors": []}',
    '{"a": "' + "x" * CUSTOM_DETAILS_MAX_BYTES + '"}',
]
details_cases = st.one_of(
    st.just(("", True)),
    st.just(("   \n", True)),  # a cleared box, as blank as an empty one: {}
    valid_details.map(lambda details: (json.dumps(details, indent=2), True)),
    st.just(('{"a": ' + "[" * 31 + "]" * 31 + "}", True)),  # 32 levels deep: the limit
    st.tuples(valid_details, st.booleans()).map(
        lambda pair: (json.dumps(pair[0], ensure_ascii=pair[1]), True)
    ),
    st.sampled_from(BAD_DETAILS).map(lambda text: (text, False)),
    valid_details.filter(bool).map(lambda details: (json.dumps(details)[:-1], False)),
    junk.filter(lambda value: not isinstance(value, dict)).map(
        lambda value: (json.dumps(value), False)
    ),
)


def timeout_is_valid(text: str) -> bool:
    """Django's IntegerField reading, then the 1..120 bound."""
    try:
        seconds = int(re.sub(r"\.0*\s*$", "", text))
    except ValueError:
        return False
    return 1 <= seconds <= 120


def name_is_valid(text: str) -> bool:
    name = text.strip()
    return bool(name) and len(name) <= 200 and "\x00" not in name and name != EXISTING_DESTINATION


def key_is_valid(text: str) -> bool:
    key = text.strip()
    return len(key) == 32 and all(char in KEY_ALPHABET for char in key)


@pytest.mark.slow  # hundreds of examples
@settings(max_examples=FORM_EXAMPLES, **HYPOTHESIS)
@given(name=names, key=routing_keys, details=details_cases, timeout=timeouts)
def test_the_destination_form_refuses_each_bad_field_with_a_message(
    destination, name, key, details, timeout
):
    details_text, details_ok = details
    expected_wrong = {
        field
        for field, ok in [
            ("name", name_is_valid(name)),
            ("routing_key", key_is_valid(key)),
            ("custom_details", details_ok),
            ("timeout_seconds", timeout_is_valid(timeout)),
        ]
        if not ok
    }
    form = DestinationForm(
        data={
            "name": name,
            "enabled": "on",
            "region": "us",
            "routing_key": key,
            "severity_override": "",
            "custom_details": details_text,
            "timeout_seconds": timeout,
        }
    )
    before = Destination.objects.count()

    valid = form.is_valid()
    event("saved" if valid else f"refused: {', '.join(sorted(form.errors))}")

    assert set(form.errors) == expected_wrong, form.errors.as_data()
    for messages in form.errors.values():
        assert messages and all(message.strip() for message in messages)
    if not valid:
        assert Destination.objects.count() == before
        return
    with transaction.atomic():
        saved = form.save()
        stored_row = Destination.objects.get(pk=saved.pk)
        assert stored_row.name == name.strip()
        assert stored_row.routing_key == key.strip()
        expected = json.loads(details_text) if details_text.strip() else {}
        assert as_numbers(stored_row.custom_details) == as_numbers(expected)
        transaction.set_rollback(True)  # the next example starts from the same table


@pytest.mark.parametrize(
    "details",
    [
        '{"team": "a\\u0000b"}',
        '{"\\ud83d": "half an emoji"}',
        '{"team": NaN}',
        '{"team": 1e400}',
        '{"n": ' + "9" * 5000 + "}",
        '{"a": ' + "[" * 50_000 + "]" * 50_000 + "}",
    ],
)
def test_the_admin_refuses_details_the_database_cannot_store(admin_client, details):
    response = admin_client.post(
        reverse("admin:destinations_destination_add"),
        {
            "name": "Platform",
            "enabled": "on",
            "region": "us",
            "routing_key": ROUTING_KEY,
            "severity_override": "",
            "custom_details": details,
            "timeout_seconds": "30",
        },
    )

    assert response.status_code == 200  # the form again, not a server error
    [message] = response.context["adminform"].form.errors["custom_details"]
    assert message.startswith("Custom details")
    assert not Destination.objects.exists()


# Hostile bodies: whatever arrives, the answer is a 2xx or a 4xx with JSON, never a 5xx.

FIELDS = [
    "detection_id",
    "detection_name",
    "run_id",
    "run_type",
    "match_count",
    "ran_at",
    "range_start",
    "range_end",
    "match_exhaustiveness",
    "search_id",
    "trace_id",
    "errors",
    "replay_link",
]
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_values = {
    "match_count": st.integers(min_value=-5, max_value=MAX_COUNT + 5)
    | st.integers(min_value=MAX_COUNT - 2, max_value=2**80),
    "ran_at": st.sampled_from(
        [
            "2026-05-01T12:00:00",
            "2026-05-01",
            "0001-01-01T00:00:00+00:01",
            "9999-12-31T23:59:59-23:59",
            "2026-05-01T12:00:00.123456+05:30",
            "2026-13-01T00:00:00Z",
        ]
    ),
    "errors": st.lists(st.text(max_size=20) | st.dictionaries(st.text(max_size=5), json_values)),
    "replay_link": st.sampled_from(
        ["https://ex.example.com/r/1", "javascript:alert(1)", "http://[::1", "https://ü.example/é"]
    ),
    "run_type": st.sampled_from(["SCHEDULED", "MANUAL", "manual", ""]),
}
RAW_HOSTILE = [
    '{"run_id": "\\ud800", "errors": ["\\udfff"]}',
    '{"errors": [{"\\u0000": "\\u0000"}]}',
    '{"match_count": Infinity}',
    "1" * 5000,
    '{"a": ' * 3000 + "1" + "}" * 3000,
    "\ufeff{}",
    "{}",
    "true",
]


@st.composite
def hostile_bodies(draw, detection_id: str) -> str | bytes:
    kind = draw(st.integers(min_value=0, max_value=9))
    if kind == 0:
        return draw(st.sampled_from(RAW_HOSTILE) | st.binary(max_size=64))
    if kind == 1:
        return json.dumps(draw(json_values))
    body = run_body(run_id=draw(st.text(min_size=1, max_size=12)))
    if draw(st.booleans()):
        body.pop("detection_name")
        body["detection_id"] = draw(st.sampled_from([detection_id, str(uuid.uuid4())]))
    for name in draw(st.sets(st.sampled_from(FIELDS), max_size=4)):
        if draw(st.booleans()):
            body.pop(name, None)
        else:
            body[name] = draw(field_values.get(name, json_values))
    body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=2)))
    return json.dumps(body, ensure_ascii=draw(st.booleans()))


@pytest.mark.slow  # hundreds of examples
@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_hostile_bodies_get_a_json_4xx_or_2xx_and_never_a_5xx(client, token, detection, data):
    raw = data.draw(hostile_bodies(str(detection.pk)))
    before = stored_counts()

    response = post_run(client, raw, token=token)

    event(f"status {response.status_code}")  # shown by --hypothesis-show-statistics
    assert response.status_code in {200, 201, 400, 404}, response.content[:500]
    answer = response.json()
    if response.status_code >= 400:
        assert all(isinstance(m, list) and m for m in answer["errors"].values())
        assert stored_counts() == before
    else:
        assert DetectionRun.objects.filter(run_id=answer["run_id"]).exists()
