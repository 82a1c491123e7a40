"""The pure event builder: the exact events PagerDuty gets, its limits, and shrinking to size."""

from __future__ import annotations

import copy
import hashlib
import json
import operator
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from destinations.pagerduty.events import (
    DEDUP_KEY_MAX_LENGTH,
    ELLIPSIS,
    EVENT_MAX_BYTES,
    PAGERDUTY_SEVERITIES,
    REPLAY_LINK_MAX_LENGTH,
    RESERVED_DETAIL_KEYS,
    ROUTING_KEY_LENGTH,
    SEVERITY_MAP,
    SUMMARY_MAX_LENGTH,
    TRUNCATED_KEY,
    DestinationOptions,
    RunFacts,
    build_resolve_event,
    build_test_event,
    build_trigger_event,
    dedup_key_for,
    event_size,
    serialize_event,
)
from destinations.pagerduty.events import MAX_ERRORS_SENT as MAX_ERRORS
from destinations.pagerduty.truncation import MAX_TRUNCATION_ENTRIES, MORE_CUTS_KEY
from tests.support.fake_pagerduty import validate_event
from tests.support.run_facts import REFERENCE_LINK, REFERENCE_RUN

ROUTING_KEY = "R0utingKey" + "x" * (ROUTING_KEY_LENGTH - 10)
LINK = REFERENCE_LINK
DEFAULT_SOURCE = "detection-destinations.example.com"
CLIENT = "Detection Destinations"
CLIENT_URL = "https://alerts.example.com/admin/"
# The reference detection's name and the SHA-256 of its UTF-8 bytes, worked out once by hand.
NAME = "Suspicious Login Attempts"
NAME_DEDUP_KEY = "9e97ba04e8aa8ae8acf907412adab705d274acdb398c8e0477a8eb39c322e7bd"

REFERENCE_OPTIONS = DestinationOptions(
    component="auth-service",
    group="identity",
    event_class="login-anomaly",
    custom_details={"team": "secops", "runbook": "https://wiki.example.com/runbooks/logins"},
)
# A run with nothing optional: no description, link, exhaustiveness, ids or errors.
BARE_RUN = replace(
    REFERENCE_RUN,
    description="",
    match_exhaustiveness=None,
    search_id=None,
    trace_id=None,
    replay_link=None,
)


def trigger(run: RunFacts = REFERENCE_RUN, options: DestinationOptions | None = None) -> dict:
    """Build a trigger event with the test's fixed source and client, checking it is valid."""
    event = build_trigger_event(
        run=run,
        options=options or DestinationOptions(),
        default_source=DEFAULT_SOURCE,
        client=CLIENT,
        client_url=CLIENT_URL,
    )
    assert_valid(event)
    return event


def assert_valid(event: dict) -> None:
    """Assert that PagerDuty would accept the event as posted, within every size limit."""
    assert "routing_key" not in event
    body = serialize_event(event, routing_key=ROUTING_KEY)
    assert len(body) <= EVENT_MAX_BYTES
    assert validate_event(json.loads(body), raw_size=len(body)) == []


def details_of(event: dict) -> dict:
    """Return the event's custom details."""
    return event["payload"]["custom_details"]


# The exact events.


def test_matched_run_event_is_exact():
    assert trigger(REFERENCE_RUN, REFERENCE_OPTIONS) == {
        "event_action": "trigger",
        "dedup_key": NAME_DEDUP_KEY,
        "payload": {
            "summary": "[HIGH] Suspicious Login Attempts - https://app.example.com/replay/123",
            "severity": "error",
            "source": "https://app.example.com/replay/123",
            "timestamp": "2024-05-01T12:00:05+00:00",
            "component": "auth-service",
            "group": "identity",
            "class": "login-anomaly",
            "custom_details": {
                "detection_id": "7d1c2f0e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
                "detection_name": "Suspicious Login Attempts",
                "severity": "HIGH",
                "description": "Many failed logins followed by a success.",
                "outcome": "MATCHED",
                "match_count": 12,
                "run_type": "SCHEDULED",
                "run_id": "run-2024-05-01-1200",
                "match_operator": "GREATER_THAN",
                "match_threshold": 5,
                "match_eagerness": "EAGER",
                "match_exhaustiveness": "COMPLETED",
                "search_id": "search-42",
                "trace_id": "trace-abc",
                "ran_at": "2024-05-01T12:00:05+00:00",
                "range_start": "2024-05-01T11:00:00+00:00",
                "range_end": "2024-05-01T12:00:00+00:00",
                "replay_link": "https://app.example.com/replay/123",
                "team": "secops",
                "runbook": "https://wiki.example.com/runbooks/logins",
            },
        },
        "links": [
            {"href": "https://app.example.com/replay/123", "text": "Replay the detection run"}
        ],
        "client": "Detection Destinations",
        "client_url": "https://alerts.example.com/admin/",
    }


def test_error_run_event_is_exact():
    run = replace(
        BARE_RUN,
        detection_name="Pipeline Failures",
        severity="CRITICAL",
        outcome="ERROR",
        match_count=0,
        run_type="MANUAL",
        ran_at=datetime(2024, 5, 1, 14, 30, 0, 250000, tzinfo=timezone(timedelta(hours=2))),
        errors=["search timed out", {"code": "E_QUOTA", "detail": "daily quota exceeded"}],
    )
    assert trigger(run) == {
        "event_action": "trigger",
        "dedup_key": "41380c98a41b576f764cde4a756c75c3d429b63cc8df72a2406bcec1b800a1a8",
        "payload": {
            "summary": "[CRITICAL] Pipeline Failures",
            "severity": "critical",
            "source": "detection-destinations.example.com",
            "timestamp": "2024-05-01T14:30:00.250000+02:00",
            "custom_details": {
                "detection_id": "7d1c2f0e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
                "detection_name": "Pipeline Failures",
                "severity": "CRITICAL",
                "outcome": "ERROR",
                "match_count": 0,
                "run_type": "MANUAL",
                "run_id": "run-2024-05-01-1200",
                "match_operator": "GREATER_THAN",
                "match_threshold": 5,
                "match_eagerness": "EAGER",
                "ran_at": "2024-05-01T14:30:00.250000+02:00",
                "range_start": "2024-05-01T11:00:00+00:00",
                "range_end": "2024-05-01T12:00:00+00:00",
                "errors": [
                    "search timed out",
                    {"code": "E_QUOTA", "detail": "daily quota exceeded"},
                ],
            },
        },
        "client": "Detection Destinations",
        "client_url": "https://alerts.example.com/admin/",
    }


def test_test_event_is_exact():
    event = build_test_event(
        destination_name="SecOps primary",
        options=DestinationOptions(
            component="auth-service",
            custom_details={"team": "secops", "note": "the destination's own note"},
        ),
        sent_by="admin",
        sent_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        dedup_key="test-5b1f0c6e9d2a4c7f8e3b1a0d9c8b7a6f",
        client=CLIENT,
        client_url=CLIENT_URL,
    )
    assert_valid(event)
    assert event == {
        "event_action": "trigger",
        "dedup_key": "test-5b1f0c6e9d2a4c7f8e3b1a0d9c8b7a6f",
        "payload": {
            "summary": "Test alert from SecOps primary",
            "severity": "info",
            "source": "test",
            "timestamp": "2024-05-01T12:30:00+00:00",
            "component": "auth-service",
            "custom_details": {
                "sent_by": "admin",
                "sent_at": "2024-05-01T12:30:00+00:00",
                "destination_name": "SecOps primary",
                "note": "This is a test alert; no action is needed.",
                "team": "secops",
            },
        },
        "client": "Detection Destinations",
        "client_url": "https://alerts.example.com/admin/",
    }


def test_test_event_takes_the_severity_override_and_shortens_a_long_name():
    event = build_test_event(
        destination_name="D" * 2000,
        options=DestinationOptions(severity_override="critical", group="identity"),
        sent_by="admin",
        sent_at=datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        dedup_key="test-1",
        client=CLIENT,
        client_url=CLIENT_URL,
    )
    assert_valid(event)
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX_LENGTH
    assert summary.startswith("Test alert from DDD")
    assert summary.endswith("D" + ELLIPSIS)
    assert event["payload"]["severity"] == "critical"
    assert event["payload"]["group"] == "identity"


def test_resolve_event_is_exact():
    event = build_resolve_event(dedup_key=NAME_DEDUP_KEY)
    assert_valid(event)
    assert event == {"event_action": "resolve", "dedup_key": NAME_DEDUP_KEY}


@pytest.mark.parametrize("dedup_key", ["", "   ", "k" * (DEDUP_KEY_MAX_LENGTH + 1)])
def test_a_dedup_key_pagerduty_would_refuse_is_refused(dedup_key):
    with pytest.raises(ValueError, match="dedup_key"):
        build_resolve_event(dedup_key=dedup_key)
    with pytest.raises(ValueError, match="dedup_key"):
        build_test_event(
            destination_name="SecOps",
            options=DestinationOptions(),
            sent_by="admin",
            sent_at=datetime(2024, 5, 1, tzinfo=UTC),
            dedup_key=dedup_key,
            client=CLIENT,
            client_url=CLIENT_URL,
        )


# Field by field.


@pytest.mark.parametrize(("detection_severity", "pagerduty_severity"), SEVERITY_MAP.items())
def test_detection_severity_maps_to_pagerduty_severity(detection_severity, pagerduty_severity):
    event = trigger(replace(REFERENCE_RUN, severity=detection_severity))
    assert event["payload"]["severity"] == pagerduty_severity
    assert event["payload"]["summary"].startswith(f"[{detection_severity}] {NAME} - ")
    assert details_of(event)["severity"] == detection_severity


@pytest.mark.parametrize("override", PAGERDUTY_SEVERITIES)
def test_severity_override_wins_and_the_summary_keeps_the_detection_severity(override):
    event = trigger(REFERENCE_RUN, DestinationOptions(severity_override=override))
    assert event["payload"]["severity"] == override
    assert event["payload"]["summary"] == f"[HIGH] {NAME} - {LINK}"
    assert details_of(event)["severity"] == "HIGH"


@pytest.mark.parametrize("link", [None, "", "   "])
def test_without_replay_link(link):
    event = trigger(replace(REFERENCE_RUN, replay_link=link))
    assert event["payload"]["summary"] == "[HIGH] Suspicious Login Attempts"
    assert " - " not in event["payload"]["summary"]
    assert event["payload"]["source"] == DEFAULT_SOURCE
    assert "links" not in event
    assert "replay_link" not in details_of(event)


def test_absent_optional_facts_are_left_out_never_null():
    details = details_of(trigger(BARE_RUN))
    for name in ("description", "match_exhaustiveness", "search_id", "trace_id", "replay_link"):
        assert name not in details
    assert "errors" not in details
    assert "errors_total" not in details
    assert TRUNCATED_KEY not in details
    assert None not in details.values()
    # Zero is a fact, not an absence.
    assert details_of(trigger(replace(BARE_RUN, match_count=0)))["match_count"] == 0


def test_errors_are_capped_and_the_total_is_given():
    errors = [f"error {number}" for number in range(25)]
    details = details_of(trigger(replace(BARE_RUN, outcome="ERROR", errors=errors)))
    assert details["errors"] == errors[:MAX_ERRORS]
    assert details["errors_total"] == 25


def test_exactly_max_errors_are_all_sent_without_a_total():
    errors = [{"code": number} for number in range(MAX_ERRORS)]
    details = details_of(trigger(replace(BARE_RUN, outcome="ERROR", errors=errors)))
    assert details["errors"] == errors
    assert "errors_total" not in details


def test_destination_details_are_merged_and_the_run_facts_win():
    options = DestinationOptions(
        custom_details={
            "team": "secops",
            "escalation": {"level": 2, "contacts": ["on-call"]},
            "severity": "LOW",
            "run_id": "spoofed",
            # Reserved names the run did not produce must not appear either.
            "errors_total": 99,
            "search_id": "spoofed",
            TRUNCATED_KEY: {"description": {"original_bytes": 1}},
        }
    )
    details = details_of(trigger(BARE_RUN, options))
    assert details["team"] == "secops"
    assert details["escalation"] == {"level": 2, "contacts": ["on-call"]}
    assert details["severity"] == "HIGH"
    assert details["run_id"] == "run-2024-05-01-1200"
    assert "errors_total" not in details
    assert "search_id" not in details
    assert TRUNCATED_KEY not in details
    assert list(details)[-2:] == ["team", "escalation"]


def test_reserved_detail_keys_name_every_detail_the_builder_writes():
    assert set(RESERVED_DETAIL_KEYS) == {
        "detection_id",
        "detection_name",
        "severity",
        "description",
        "outcome",
        "match_count",
        "run_type",
        "run_id",
        "match_operator",
        "match_threshold",
        "match_eagerness",
        "match_exhaustiveness",
        "search_id",
        "trace_id",
        "ran_at",
        "range_start",
        "range_end",
        "replay_link",
        "errors",
        "errors_total",
        "_truncated",
        "_fallback_from",  # written when a failed page is handed to the fallback
    }
    run = replace(REFERENCE_RUN, outcome="ERROR", errors=["e"] * (MAX_ERRORS + 1))
    assert set(details_of(trigger(run))) <= RESERVED_DETAIL_KEYS


@pytest.mark.parametrize("blank", ["", "  "])
def test_blank_component_group_and_class_are_left_out(blank):
    options = DestinationOptions(component=blank, group=blank, event_class=blank)
    payload = trigger(REFERENCE_RUN, options)["payload"]
    assert not {"component", "group", "class"} & set(payload)


def test_class_goes_into_the_payload_as_class():
    payload = trigger(REFERENCE_RUN, DestinationOptions(event_class="login-anomaly"))["payload"]
    assert payload["class"] == "login-anomaly"
    assert "event_class" not in payload
    assert not {"component", "group"} & set(payload)


@pytest.mark.parametrize("field", ["ran_at", "range_start", "range_end"])
def test_naive_datetimes_are_refused(field):
    run = replace(REFERENCE_RUN, **{field: datetime(2024, 5, 1, 12, 0)})
    with pytest.raises(ValueError, match=field):
        trigger(run)


def test_naive_sent_at_is_refused():
    with pytest.raises(ValueError, match="sent_at"):
        build_test_event(
            destination_name="SecOps",
            options=DestinationOptions(),
            sent_by="admin",
            sent_at=datetime(2024, 5, 1, 12, 0),
            dedup_key="test-1",
            client=CLIENT,
            client_url=CLIENT_URL,
        )


def test_timestamps_keep_their_offset_and_a_sub_minute_offset_becomes_utc():
    india = timezone(timedelta(hours=5, minutes=30))
    run = replace(REFERENCE_RUN, ran_at=datetime(2024, 5, 1, 17, 30, tzinfo=india))
    assert trigger(run)["payload"]["timestamp"] == "2024-05-01T17:30:00+05:30"
    # RFC 3339 has no seconds in offsets (historical local mean time has them).
    odd = timezone(timedelta(minutes=19, seconds=32))
    run = replace(REFERENCE_RUN, ran_at=datetime(1900, 1, 1, 0, 19, 32, tzinfo=odd))
    assert trigger(run)["payload"]["timestamp"] == "1900-01-01T00:00:00+00:00"


def test_dedup_key_is_the_sha256_of_the_utf8_name():
    name = "Connexions suspectes à Zürich – 東京 🚨"
    expected = "c72adec2a427f2f28611bd4225b3539a74bffc8426f0a916369a3125967e25cc"
    assert dedup_key_for(name) == expected
    assert expected == hashlib.sha256(name.encode("utf-8")).hexdigest()
    assert trigger(replace(REFERENCE_RUN, detection_name=name))["dedup_key"] == expected
    assert dedup_key_for(NAME) == NAME_DEDUP_KEY


def test_not_matched_runs_get_no_event():
    with pytest.raises(ValueError, match="NOT_MATCHED"):
        trigger(replace(REFERENCE_RUN, outcome="NOT_MATCHED"))


@pytest.mark.parametrize(
    ("run", "options", "default_source", "message"),
    [
        (replace(REFERENCE_RUN, severity="SEVERE"), DestinationOptions(), "s", "severity"),
        (REFERENCE_RUN, DestinationOptions(severity_override="fatal"), "s", "override"),
        (BARE_RUN, DestinationOptions(), " ", "default_source"),
    ],
)
def test_values_pagerduty_cannot_take_are_refused(run, options, default_source, message):
    with pytest.raises(ValueError, match=message):
        build_trigger_event(
            run=run,
            options=options,
            default_source=default_source,
            client=CLIENT,
            client_url=CLIENT_URL,
        )


# The summary.


def test_a_long_name_is_shortened_never_the_link():
    event = trigger(replace(REFERENCE_RUN, detection_name="N" * 2000))
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX_LENGTH
    assert summary.startswith("[HIGH] NNN")
    assert summary.endswith(f"N{ELLIPSIS} - {LINK}")


def test_a_link_that_fits_beside_a_one_character_name_is_kept_whole():
    prefix = "[CRITICAL] "
    link = "https://app.example.com/replay/"
    link += "a" * (SUMMARY_MAX_LENGTH - len(prefix) - len(" - ") - 1 - len(link))
    event = trigger(
        replace(REFERENCE_RUN, severity="CRITICAL", detection_name="N" * 255, replay_link=link)
    )
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX_LENGTH
    assert summary == f"{prefix}{ELLIPSIS} - {link}"


def test_a_link_too_long_for_the_summary_is_cut_there_and_whole_everywhere_else():
    link = "https://app.example.com/replay/" + "a" * 1100
    event = trigger(replace(REFERENCE_RUN, replay_link=link))
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX_LENGTH
    assert summary.startswith(f"[HIGH] {NAME} - https://app.example.com/replay/aaa")
    assert summary.endswith("a" + ELLIPSIS)
    assert event["payload"]["source"] == link
    assert event["links"] == [{"href": link, "text": "Replay the detection run"}]
    assert details_of(event)["replay_link"] == link


def test_beside_a_cut_link_a_long_name_keeps_its_first_characters():
    link = "https://app.example.com/replay/" + "a" * REPLAY_LINK_MAX_LENGTH
    event = trigger(replace(REFERENCE_RUN, detection_name="N" * 5000, replay_link=link))
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX_LENGTH
    assert summary.startswith(f"[HIGH] {'N' * 31}{ELLIPSIS} - https://app.example.com/replay/aaa")
    assert summary.endswith("a" + ELLIPSIS)
    assert event["payload"]["source"] == link


# Serialization.


def test_serialize_event_puts_the_routing_key_first_in_compact_utf8_json():
    event = build_resolve_event(dedup_key="Zürich")
    assert serialize_event(event, routing_key=ROUTING_KEY) == (
        '{"routing_key":"' + ROUTING_KEY + '","event_action":"resolve","dedup_key":"Zürich"}'
    ).encode("utf-8")
    assert event_size(event) == len(serialize_event(event, routing_key="k" * ROUTING_KEY_LENGTH))
    # The key given at send time always wins over one that slipped into a stored body.
    body = serialize_event({**event, "routing_key": "stale"}, routing_key=ROUTING_KEY)
    assert json.loads(body)["routing_key"] == ROUTING_KEY


def test_text_strict_json_cannot_carry_is_repaired():
    # Lenient parsers let both in ("\ud800", NaN); PagerDuty would refuse the event.
    run = replace(REFERENCE_RUN, description="lone \ud800 half", errors=[float("nan")])
    options = DestinationOptions(custom_details={"ratio": float("inf"), "k\udfff": "v"})
    details = details_of(trigger(replace(run, outcome="ERROR"), options))
    assert details["description"] == "lone \ufffd half"
    assert details["errors"] == ["NaN"]
    assert details["ratio"] == "Infinity"
    assert details["k\ufffd"] == "v"


# Staying under the size limit.


def test_a_huge_description_is_shortened_and_recorded():
    description = "x" * 900_000
    event = trigger(replace(REFERENCE_RUN, description=description))
    details = details_of(event)
    assert details[TRUNCATED_KEY] == {"description": {"original_bytes": 900_002}}
    assert details["description"].endswith(ELLIPSIS)
    assert description.startswith(details["description"][:-1])
    # Nothing else was touched, and the room was used.
    assert details["detection_name"] == NAME
    assert event["payload"]["summary"] == f"[HIGH] {NAME} - {LINK}"
    assert event_size(event) > EVENT_MAX_BYTES - 10_000


def test_the_largest_values_shrink_first_and_structure_is_kept():
    errors = [{"code": "E1", "detail": "d" * 600_000}, {"code": "E2", "detail": "short"}]
    options = DestinationOptions(
        custom_details={"context": {"hosts": ["web-1", "web-2"], "raw": "r" * 300_000}}
    )
    details = details_of(trigger(replace(REFERENCE_RUN, outcome="ERROR", errors=errors), options))
    truncated = details[TRUNCATED_KEY]
    assert set(truncated) == {"errors[0].detail", "context.raw"}
    assert truncated["errors[0].detail"] == {"original_bytes": 600_002}
    # Both shrank to the same level: the larger lost more.
    kept = len(details["errors"][0]["detail"]), len(details["context"]["raw"])
    assert abs(kept[0] - kept[1]) < 100
    assert details["errors"][0]["code"] == "E1"
    assert details["errors"][1] == {"code": "E2", "detail": "short"}
    assert details["context"]["hosts"] == ["web-1", "web-2"]
    assert details["description"] == REFERENCE_RUN.description


def test_a_long_list_keeps_its_leading_items():
    hosts = [f"host-{number}.example.com" for number in range(100_000)]
    event = trigger(REFERENCE_RUN, DestinationOptions(custom_details={"hosts": hosts}))
    details = details_of(event)
    kept = details["hosts"]
    assert 0 < len(kept) < len(hosts)
    assert kept == hosts[: len(kept)]
    assert details[TRUNCATED_KEY]["hosts"] == {
        "original_bytes": len(json.dumps(hosts, separators=(",", ":"))),
        "original_items": 100_000,
        "kept_items": len(kept),
    }


def test_the_record_names_the_largest_cuts_and_counts_the_rest():
    blobs = {f"blob{number:02}": "b" * (20_000 + number) for number in range(40)}
    details = details_of(trigger(REFERENCE_RUN, DestinationOptions(custom_details=blobs)))
    truncated = details[TRUNCATED_KEY]
    assert len(truncated) == MAX_TRUNCATION_ENTRIES + 1
    assert truncated[MORE_CUTS_KEY] == {"more_cuts": 40 - MAX_TRUNCATION_ENTRIES}
    assert "blob39" in truncated
    assert "blob00" not in truncated


def test_shrinking_leaves_the_inputs_alone():
    run = replace(REFERENCE_RUN, outcome="ERROR", errors=[{"detail": "d" * 700_000}])
    options = DestinationOptions(custom_details={"context": {"raw": "r" * 700_000}})
    before = copy.deepcopy((run, options))
    trigger(run, options)
    assert (run, options) == before


def test_fifty_megabytes_of_details_shrink_quickly():
    options = DestinationOptions(custom_details={"dump": "é" * 25_000_000})
    started = time.perf_counter()
    event = trigger(replace(REFERENCE_RUN, description="x" * 25_000_000), options)
    elapsed = time.perf_counter() - started
    assert set(details_of(event)[TRUNCATED_KEY]) == {"description", "dump"}
    # A generous bound: it takes well under a second, re-serializing per byte would take hours.
    assert elapsed < 10


# Properties over any input.

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
# Huge strings are built by repetition: generating megabytes character by character is slow.
_HUGE_TEXT = st.builds(operator.mul, st.text(min_size=1, max_size=3), st.integers(1, 700_000))
_JSON = st.recursive(
    _SCALARS | _HUGE_TEXT,
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=12), children, max_size=6)
    ),
    max_leaves=25,
)
_NAMES = st.text(max_size=255) | st.text(min_size=256, max_size=3000) | _HUGE_TEXT
_URL_CHARACTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~/?=&%"
_LINK_PREFIX = "https://app.example.com/replay/"
_LINKS = st.none() | st.text(
    alphabet=_URL_CHARACTERS, max_size=REPLAY_LINK_MAX_LENGTH - len(_LINK_PREFIX)
).map(_LINK_PREFIX.__add__)
# Whole-minute offsets, as RFC 3339 spells them (sub-minute ones have their own test).
_MOMENTS = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=timezone(timedelta(minutes=minutes))),
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1)),
    st.integers(-23 * 60, 23 * 60),
)
_OPTIONS = st.builds(
    DestinationOptions,
    severity_override=st.sampled_from(("", *PAGERDUTY_SEVERITIES)),
    component=st.text(max_size=30),
    group=st.text(max_size=30),
    event_class=st.text(max_size=30),
    custom_details=st.dictionaries(st.text(max_size=20), _JSON, max_size=8),
)
_RUNS = st.builds(
    RunFacts,
    detection_id=st.uuids().map(str),
    detection_name=_NAMES,
    description=st.text(max_size=200) | _HUGE_TEXT,
    severity=st.sampled_from(tuple(SEVERITY_MAP)),
    match_operator=st.sampled_from(("GREATER_THAN", "EQUAL", "LESS_THAN_OR_EQUAL")),
    match_threshold=st.integers(0, 10**6),
    match_eagerness=st.sampled_from(("EAGER", "EXHAUSTIVE")),
    outcome=st.sampled_from(("MATCHED", "ERROR")),
    match_count=st.integers(0, 10**9),
    run_type=st.sampled_from(("SCHEDULED", "MANUAL")),
    run_id=st.text(min_size=1, max_size=64),
    ran_at=_MOMENTS,
    range_start=_MOMENTS,
    range_end=_MOMENTS,
    match_exhaustiveness=st.none() | st.sampled_from(("COMPLETED", "STOPPED_EARLY")),
    search_id=st.none() | st.text(max_size=40),
    trace_id=st.none() | st.text(max_size=40),
    errors=st.lists(_JSON, max_size=14),
    replay_link=_LINKS,
)
_PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _expected_details(run: RunFacts, options: DestinationOptions) -> dict:
    """Spell the untrimmed custom details from design §5, independently of the builder."""
    facts = {
        "detection_id": run.detection_id,
        "detection_name": run.detection_name,
        "severity": run.severity,
        "description": run.description,
        "outcome": run.outcome,
        "match_count": run.match_count,
        "run_type": run.run_type,
        "run_id": run.run_id,
        "match_operator": run.match_operator,
        "match_threshold": run.match_threshold,
        "match_eagerness": run.match_eagerness,
        "match_exhaustiveness": run.match_exhaustiveness,
        "search_id": run.search_id,
        "trace_id": run.trace_id,
        "ran_at": run.ran_at.isoformat(),
        "range_start": run.range_start.isoformat(),
        "range_end": run.range_end.isoformat(),
        "replay_link": run.replay_link,
    }
    details = {
        key: value for key, value in facts.items() if value is not None and str(value).strip()
    }
    if run.errors:
        details["errors"] = run.errors[:MAX_ERRORS]
    if len(run.errors) > MAX_ERRORS:
        details["errors_total"] = len(run.errors)
    for key, value in options.custom_details.items():
        if key not in RESERVED_DETAIL_KEYS:
            details[key] = value
    return details


@pytest.mark.slow  # hundreds of generated runs
@_PROPERTY_SETTINGS
@given(run=_RUNS, options=_OPTIONS)
def test_any_run_gives_a_valid_event_within_limits(run, options):
    event = trigger(run, options)
    payload = event["payload"]
    details = payload["custom_details"]
    assert event_size(event) <= EVENT_MAX_BYTES
    assert len(payload["summary"]) <= SUMMARY_MAX_LENGTH
    assert event["dedup_key"] == dedup_key_for(run.detection_name)
    if run.replay_link:
        # Whole when it fits beside a one-character name (§5), else cut there and only there.
        room = SUMMARY_MAX_LENGTH - len(f"[{run.severity}] ") - len(" - ") - len(run.replay_link)
        if room >= min(len(run.detection_name), 1):
            assert payload["summary"].endswith(f" - {run.replay_link}")
        else:
            cut = payload["summary"].rpartition(" - ")[2]
            assert cut.endswith(ELLIPSIS)
            assert run.replay_link.startswith(cut[: -len(ELLIPSIS)])
        assert payload["source"] == run.replay_link
        assert event["links"] == [{"href": run.replay_link, "text": "Replay the detection run"}]
    else:
        assert payload["source"] == DEFAULT_SOURCE
        assert "links" not in event
    # `_truncated` appears exactly when the untrimmed event would have been too big.
    expected = _expected_details(run, options)
    untrimmed = {**event, "payload": {**payload, "custom_details": expected}}
    too_big = event_size(untrimmed) > EVENT_MAX_BYTES
    assert (TRUNCATED_KEY in details) == too_big
    if too_big:
        assert details[TRUNCATED_KEY]
        kept = [key for key in details if key != TRUNCATED_KEY]
        assert kept == list(expected)[: len(kept)]
    else:
        assert details == expected


@pytest.mark.slow  # hundreds of generated test events
@_PROPERTY_SETTINGS
@given(
    destination_name=_NAMES,
    options=_OPTIONS,
    sent_by=st.text(max_size=150),
    sent_at=_MOMENTS,
    dedup_key=st.text(min_size=1, max_size=DEDUP_KEY_MAX_LENGTH).filter(str.strip),
)
def test_any_test_event_is_valid_within_limits(
    destination_name, options, sent_by, sent_at, dedup_key
):
    event = build_test_event(
        destination_name=destination_name,
        options=options,
        sent_by=sent_by,
        sent_at=sent_at,
        dedup_key=dedup_key,
        client=CLIENT,
        client_url=CLIENT_URL,
    )
    assert_valid(event)
    payload = event["payload"]
    assert len(payload["summary"]) <= SUMMARY_MAX_LENGTH
    assert payload["summary"].startswith("Test alert from ")
    assert payload["source"] == "test"
    assert payload["severity"] == (options.severity_override or "info")
    assert event["dedup_key"] == dedup_key
