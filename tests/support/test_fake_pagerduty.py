"""The fake PagerDuty answers, refuses and misbehaves the way the rest of the suite relies on."""

from __future__ import annotations

import hashlib
import json
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.fake_pagerduty import FakePagerDuty, Fault, validate_event

FAKE_DIR = Path(__file__).parent / "fake_pagerduty"
REPO_ROOT = Path(__file__).parents[2]
ROUTING_KEY = "R0123456789ABCDEF0123456789ABCDE"


def trigger(**changes: Any) -> dict[str, Any]:
    """Build a valid trigger event, with top-level fields replaced."""
    event: dict[str, Any] = {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "b7e1c1c7a0b2e5f4",
        "payload": {
            "summary": "[HIGH] Suspicious Login Attempts - https://app.example.com/replay/123",
            "severity": "error",
            "source": "https://app.example.com/replay/123",
            "timestamp": "2015-07-17T08:42:58.315+00:00",
            "custom_details": {"match_count": 7},
        },
        "links": [{"href": "https://app.example.com/replay/123", "text": "Replay"}],
        "client": "Detection Destinations",
        "client_url": "https://app.example.com/",
    }
    event.update(changes)
    return event


def with_payload(**changes: Any) -> dict[str, Any]:
    """Build a valid trigger event, with payload fields replaced (None removes one)."""
    event = trigger()
    for name, value in changes.items():
        if value is None:
            event["payload"].pop(name)
        else:
            event["payload"][name] = value
    return event


@pytest.fixture
def fake() -> Iterator[FakePagerDuty]:
    """Run a fake PagerDuty without touching Django settings."""
    with FakePagerDuty() as server:
        yield server


def test_vendored_schema_matches_the_checksum_in_source_notes() -> None:
    notes = (FAKE_DIR / "SOURCE.md").read_text(encoding="utf-8")
    stated = re.search(r"sha256:\s*([0-9a-f]{64})", notes)
    assert stated is not None
    digest = hashlib.sha256((FAKE_DIR / "events-v2-openapiv3.json").read_bytes()).hexdigest()
    assert digest == stated.group(1)


def test_valid_trigger_is_accepted_and_recorded(fake: FakePagerDuty) -> None:
    event = trigger()
    response = requests.post(fake.url, json=event, timeout=5)

    assert response.status_code == 202
    assert response.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": event["dedup_key"],
    }
    assert fake.events == [event]
    (record,) = fake.received
    assert record.status == 202
    assert record.problems == []
    assert record.headers["content-type"] == record.headers["Content-Type"] == "application/json"
    assert json.loads(record.raw) == event
    assert abs(record.at - time.time()) < 5


def test_trigger_without_dedup_key_gets_a_generated_one(fake: FakePagerDuty) -> None:
    event = trigger()
    del event["dedup_key"]
    response = requests.post(fake.url, json=event, timeout=5)

    assert response.status_code == 202
    assert re.fullmatch(r"[0-9a-f]{32}", response.json()["dedup_key"])


def test_valid_resolve_is_accepted(fake: FakePagerDuty) -> None:
    event = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": "abc"}
    response = requests.post(fake.url, json=event, timeout=5)

    assert response.status_code == 202
    assert response.json() == {
        "status": "success",
        "message": "Event processed",
        "dedup_key": "abc",
    }
    assert fake.events == [event]


@pytest.mark.parametrize(
    ("event", "problem"),
    [
        pytest.param(
            trigger(routing_key=ROUTING_KEY + "F"),
            "routing_key must be 32 characters; got 33",
            id="key-33-characters",
        ),
        pytest.param(
            trigger(routing_key=ROUTING_KEY[:-1] + "-"),
            "routing_key must contain only letters",
            id="key-with-dash",
        ),
        pytest.param(
            with_payload(summary="x" * 1025),
            "payload.summary must be at most 1024 characters; got 1025",
            id="summary-too-long",
        ),
        pytest.param(with_payload(source=None), "payload.source is required", id="no-source"),
        pytest.param(
            with_payload(severity="high"), "payload.severity must be one of", id="bad-severity"
        ),
        pytest.param(
            with_payload(timestamp="2015-07-17T08:42:58.315+0000"),
            "payload.timestamp must be an RFC 3339 date-time",
            id="timestamp-not-rfc3339",
        ),
        pytest.param(
            trigger(links=[{"href": "replay/123"}]),
            "links[0].href must be an absolute http or https URL",
            id="link-not-a-url",
        ),
        pytest.param(
            trigger(dedup_key="d" * 256),
            "dedup_key must be at most 255 characters; got 256",
            id="dedup-key-too-long",
        ),
        pytest.param(
            with_payload(custom_details={"log": "x" * 512_000}),
            "event must be at most 512,000 bytes",
            id="event-too-large",
        ),
        pytest.param(
            {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "a"},
            "payload is required for trigger events",
            id="trigger-without-payload",
        ),
        pytest.param(
            {"routing_key": ROUTING_KEY, "event_action": "resolve"},
            "dedup_key is required for resolve events",
            id="resolve-without-dedup-key",
        ),
    ],
)
def test_invalid_event_is_refused_with_a_readable_problem(
    fake: FakePagerDuty, event: dict[str, Any], problem: str
) -> None:
    response = requests.post(fake.url, json=event, timeout=5)

    assert response.status_code == 400
    body = response.json()
    assert body["status"] == "invalid event"
    assert body["message"] == "Event object is invalid"
    assert any(problem in error for error in body["errors"]), body["errors"]
    assert event["routing_key"] not in response.text
    assert fake.accepted == []
    assert fake.received[0].problems == body["errors"]


def test_problems_never_quote_the_routing_key() -> None:
    key = ROUTING_KEY[:-1] + "!"
    problems = validate_event(trigger(routing_key=key, links=[{"href": key}], event_action=key))

    assert len(problems) == 3
    assert not any(key in problem for problem in problems)


def test_size_limit_counts_the_bytes_received() -> None:
    assert validate_event(trigger(), raw_size=512_000) == []
    assert validate_event(trigger(), raw_size=512_001) == [
        "event must be at most 512,000 bytes; got 512,001"
    ]


def test_body_that_is_not_json_is_a_parse_error(fake: FakePagerDuty) -> None:
    response = requests.post(
        fake.url, data=b"{not json", headers={"Content-Type": "application/json"}, timeout=5
    )

    assert response.status_code == 400
    assert response.json() == {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["JSON parse error"],
    }
    assert fake.received[0].json is None


def test_unknown_path_is_not_found(fake: FakePagerDuty) -> None:
    response = requests.post(fake.url.replace("/v2/enqueue", "/v1/enqueue"), json={}, timeout=5)

    assert response.status_code == 404


def test_throttle_carries_retry_after(fake: FakePagerDuty) -> None:
    fake.inject(Fault.status(429, headers={"Retry-After": "3"}))
    throttled = requests.post(fake.url, json=trigger(), timeout=5)
    after = requests.post(fake.url, json=trigger(), timeout=5)

    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "3"
    assert throttled.json()["status"] == "throttle event"
    assert after.status_code == 202
    assert [record.status for record in fake.received] == [429, 202]
    assert len(fake.accepted) == 1


def test_server_error_status(fake: FakePagerDuty) -> None:
    fake.inject(Fault.status(503))

    assert requests.post(fake.url, json=trigger(), timeout=5).status_code == 503
    assert fake.accepted == []


def test_delay_makes_a_short_timeout_expire(fake: FakePagerDuty) -> None:
    fake.inject(Fault.delay(2.0))

    with pytest.raises(requests.ReadTimeout):
        requests.post(fake.url, json=trigger(), timeout=(1, 0.1))


def test_latency_is_applied_before_each_answer(fake: FakePagerDuty) -> None:
    fake.latency = 0.15
    started = time.monotonic()
    response = requests.post(fake.url, json=trigger(), timeout=5)

    assert response.status_code == 202
    assert time.monotonic() - started >= 0.15


@pytest.mark.parametrize("fault", [Fault.reset(), Fault.drop()], ids=["reset", "drop"])
def test_connection_faults_raise_connection_error(fake: FakePagerDuty, fault: Fault) -> None:
    fake.inject(fault)

    with pytest.raises(requests.ConnectionError):
        requests.post(fake.url, json=trigger(), timeout=5)
    assert fake.received[0].status is None
    assert requests.post(fake.url, json=trigger(), timeout=5).status_code == 202


def test_reset_sends_tcp_rst(fake: FakePagerDuty) -> None:
    fake.inject(Fault.reset())

    with pytest.raises(requests.ConnectionError) as raised:
        requests.post(fake.url, json=trigger(), timeout=5)
    assert "reset" in str(raised.value).lower()


def test_malformed_success_is_202_without_json(fake: FakePagerDuty) -> None:
    fake.inject(Fault.malformed_success())
    response = requests.post(fake.url, json=trigger(), timeout=5)

    assert response.status_code == 202
    with pytest.raises(ValueError):
        response.json()


def test_fault_hits_exactly_times_requests_then_queue_moves_on(fake: FakePagerDuty) -> None:
    fake.inject(Fault.status(500), times=2)
    fake.inject(Fault.status(429))
    statuses = [requests.post(fake.url, json=trigger(), timeout=5).status_code for _ in range(5)]

    assert statuses == [500, 500, 429, 202, 202]


def test_fault_without_times_lasts_until_cleared(fake: FakePagerDuty) -> None:
    fake.inject(Fault.status(503), times=None)
    session = requests.Session()
    statuses = [session.post(fake.url, json=trigger(), timeout=5).status_code for _ in range(4)]
    fake.clear_faults()

    assert statuses == [503] * 4
    assert session.post(fake.url, json=trigger(), timeout=5).status_code == 202


def test_probability_is_seeded_and_only_hits_count_toward_times(fake: FakePagerDuty) -> None:
    fake.inject(Fault.status(503), times=3, probability=0.5, seed=7)
    session = requests.Session()
    statuses = [session.post(fake.url, json=trigger(), timeout=5).status_code for _ in range(20)]

    rng = random.Random(7)
    expected, hits = [], 0
    for _ in range(20):
        hit = hits < 3 and rng.random() < 0.5
        hits += hit
        expected.append(503 if hit else 202)
    assert statuses == expected
    assert statuses.count(503) == 3


def test_refused_key_gets_its_status_without_the_key(fake: FakePagerDuty) -> None:
    other_key = "Z" * 32
    fake.refuse_key(ROUTING_KEY)
    fake.refuse_key(other_key, status=404)
    refused = requests.post(fake.url, json=trigger(), timeout=5)
    not_found = requests.post(fake.url, json=trigger(routing_key=other_key), timeout=5)

    assert refused.status_code == 400
    assert refused.json()["errors"] == ["Invalid routing key"]
    assert not_found.status_code == 404
    assert ROUTING_KEY not in refused.text
    assert other_key not in not_found.text
    assert fake.accepted == []
    fake.reset()
    assert requests.post(fake.url, json=trigger(), timeout=5).status_code == 202


def test_wait_for_blocks_until_enough_events_are_accepted(fake: FakePagerDuty) -> None:
    def send_later() -> None:
        time.sleep(0.05)
        for _ in range(2):
            requests.post(fake.url, json=trigger(), timeout=5)

    sender = threading.Thread(target=send_later)
    sender.start()
    try:
        assert fake.wait_for(2, timeout=5)
        assert not fake.wait_for(3, timeout=0.05)
    finally:
        sender.join()


def test_keep_alive_answers_do_not_stall(fake: FakePagerDuty) -> None:
    session = requests.Session()
    started = time.monotonic()
    for _ in range(50):
        session.post(fake.url, json=trigger(), timeout=5)

    # A response split into small writes waits ~40 ms on delayed ACK: 50 of them take 2 s.
    assert time.monotonic() - started < 1.0
    assert len(fake.accepted) == 50


def test_restart_listens_on_the_same_url(fake: FakePagerDuty) -> None:
    url = fake.url
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json=trigger(), timeout=5)
    fake.start()

    assert fake.url == url
    assert requests.post(url, json=trigger(), timeout=5).status_code == 202


def test_pytest_fixture_points_settings_at_the_fake(
    fake_pagerduty: FakePagerDuty, settings: Any
) -> None:
    assert fake_pagerduty.url == settings.PAGERDUTY_EVENTS_URL
    assert requests.post(fake_pagerduty.url, json=trigger(), timeout=5).status_code == 202


def run_module(*args: str) -> subprocess.Popen[str]:
    """Start `python -m tests.support.fake_pagerduty` from the repository root."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.fake_pagerduty", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_module_prints_its_url_answers_and_stops_on_sigterm() -> None:
    process = run_module("--port", "0")
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:\d+/v2/enqueue)\n", line)
        assert match, line
        response = requests.post(match.group(1), json=trigger(), timeout=5)
        assert response.status_code == 202
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_acknowledge_needs_no_payload_and_resolve_ignores_one() -> None:
    acknowledge = {"routing_key": ROUTING_KEY, "event_action": "acknowledge", "dedup_key": "x"}
    resolve = {**acknowledge, "event_action": "resolve", "payload": {"summary": "only a trigger"}}

    assert validate_event(acknowledge) == []
    assert validate_event(resolve) == []
