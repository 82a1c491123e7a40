"""The PagerDuty HTTP client against a real loopback server: what was posted and what came back."""

from __future__ import annotations

import http.server
import json
import logging
import pickle
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses

import project
from destinations.pagerduty.client import (
    EU_EVENTS_URL,
    RESPONSE_EXCERPT_MAX,
    US_EVENTS_URL,
    Accepted,
    PagerDutyClient,
    events_url,
    get_client,
)
from destinations.pagerduty.errors import (
    DISABLED_KEY_HINT,
    EVENT_FIELD_HINT,
    MALFORMED_KEY_HINT,
    NO_INTEGRATION_HINT,
    UNKNOWN_KEY_HINT,
    EventRejected,
    KeyRejected,
    PagerDutyError,
    RateLimited,
    RequestRejected,
    ServerError,
    Timeout,
    Unreachable,
    error_for_status,
    parse_retry_after,
)
from tests.support.fake_pagerduty import Fault

KEY = "Abc123def456Ghi789jkl012Mno345pQ"
MASKED_KEY = "••••" + KEY[-4:]
DEDUP_KEY = "5f2b0c6a1d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a"


def event_body(routing_key: str = KEY, **overrides: object) -> bytes:
    """Serialize a valid trigger event the way the event builder would."""
    event = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": DEDUP_KEY,
        "payload": {
            "summary": "[HIGH] Suspicious Login Attempts",
            "severity": "error",
            "source": "detection-destinations",
            "timestamp": "2025-01-02T03:04:05+00:00",
            "custom_details": {"match_count": 7, "note": "naïve ✓"},
        },
        "client": project.PRODUCT_NAME,
    }
    event.update(overrides)
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()


@pytest.fixture
def client():
    """A fresh client, closed afterwards so no connection outlives the test."""
    pagerduty_client = PagerDutyClient()
    yield pagerduty_client
    pagerduty_client.adapter.close()


def post(client: PagerDutyClient, url: str, *, body: bytes | None = None, timeout: float = 5):
    """Send one event with the test key."""
    return client.send(body or event_body(), routing_key=KEY, url=url, timeout=timeout)


def open_local_ports(client: PagerDutyClient, url: str) -> set[int]:
    """List the local ports of the client's idle open connections for a URL."""
    # The fake does not say which connection a request came on, so look at the client's pool.
    pools = client.adapter.poolmanager.pools
    ports = set()
    # urllib3's pool container refuses plain iteration; keys() is its way to list them.
    for key in pools.keys():  # noqa: SIM118
        for connection in list(pools[key].pool.queue):
            if connection is not None and connection.sock is not None:
                ports.add(connection.sock.getsockname()[1])
    return ports


def assert_no_key(*texts: object) -> None:
    """Fail if the routing key shows in any of the texts."""
    for text in texts:
        assert KEY not in str(text)


def assert_scrubbed(error: PagerDutyError) -> None:
    """Fail if the routing key shows anywhere an error could be printed or stored."""
    assert_no_key(str(error), repr(error), error.message, error.response_excerpt, *error.errors)


# --- accepted ----------------------------------------------------------------------------


def test_accepted_keeps_pagerdutys_message_and_dedup_key(client, fake_pagerduty):
    accepted = post(client, fake_pagerduty.url)

    assert isinstance(accepted, Accepted)
    assert 200 <= accepted.status_code < 300
    assert accepted.message == "Event processed"
    assert accepted.dedup_key == DEDUP_KEY
    assert "success" in accepted.response_excerpt
    assert accepted.duration_ms >= 0
    assert len(fake_pagerduty.received) == 1


def test_accepted_post_carries_json_pagerduty_and_product_headers(client, fake_pagerduty, settings):
    settings.SITE_URL = "https://alerts.example.com/admin/"

    post(client, fake_pagerduty.url)

    record = fake_pagerduty.received[0]
    assert record.headers["Content-Type"] == "application/json"
    assert record.headers["Accept"] == "application/vnd.pagerduty+json;version=2"
    user_agent = record.headers["User-Agent"]
    assert user_agent == f"DetectionDestinations/{project.__version__} (+{settings.SITE_URL})"
    assert "python-requests" not in user_agent


def test_body_is_posted_byte_for_byte(client, fake_pagerduty):
    body = event_body()

    post(client, fake_pagerduty.url, body=body)

    record = fake_pagerduty.received[0]
    assert record.json == json.loads(body)
    assert record.raw == body
    assert record.headers["Content-Length"] == str(len(body))


def test_malformed_success_is_still_accepted(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.malformed_success(), times=1)

    accepted = post(client, fake_pagerduty.url)

    assert 200 <= accepted.status_code < 300
    assert accepted.message == ""
    assert accepted.dedup_key == ""
    assert accepted.response_excerpt != ""


def test_oversized_answer_is_cut_and_its_connection_dropped(client, fake_pagerduty):
    padding = "x" * 200_000
    fake_pagerduty.inject(Fault.status(202, body={"message": "Event processed", "pad": padding}))

    accepted = post(client, fake_pagerduty.url)

    assert accepted.status_code == 202
    assert len(accepted.response_excerpt) == RESPONSE_EXCERPT_MAX
    # Only part of the answer was read, so its connection was closed rather than kept.
    assert open_local_ports(client, fake_pagerduty.url) == set()
    assert post(client, fake_pagerduty.url).message == "Event processed"


# --- refusals ----------------------------------------------------------------------------


def test_refused_key_400_is_event_rejected_with_errors(client, fake_pagerduty):
    fake_pagerduty.refuse_key(KEY, status=400)

    with pytest.raises(EventRejected) as caught:
        post(client, fake_pagerduty.url)

    error = caught.value
    assert isinstance(error, ValueError)
    assert error.status_code == 400
    assert error.retryable is False
    assert error.message
    assert error.errors
    assert str(error).startswith(f"PagerDuty answered 400: {error.message} (")
    # The fake answers as PagerDuty does for a well-formed key it does not know.
    assert error.errors == ["Invalid routing key"]
    assert error.hint == UNKNOWN_KEY_HINT
    assert_scrubbed(error)


def test_invalid_event_400_carries_pagerdutys_errors(client, fake_pagerduty):
    body = event_body(payload={"summary": "no severity and no source"})

    with pytest.raises(EventRejected) as caught:
        post(client, fake_pagerduty.url, body=body)

    assert caught.value.errors
    assert all(isinstance(item, str) for item in caught.value.errors)


@pytest.mark.parametrize("status", [401, 403, 404])
def test_refused_key_is_key_rejected(client, fake_pagerduty, status):
    fake_pagerduty.refuse_key(KEY, status=status)

    with pytest.raises(KeyRejected) as caught:
        post(client, fake_pagerduty.url)

    error = caught.value
    assert isinstance(error, PermissionError)
    assert error.status_code == status
    assert error.retryable is False
    assert (
        error.hint
        == {
            401: UNKNOWN_KEY_HINT,
            403: DISABLED_KEY_HINT,
            404: NO_INTEGRATION_HINT,
        }[status]
    )
    assert str(error).startswith(f"PagerDuty answered {status}: ")
    assert_scrubbed(error)


@pytest.mark.parametrize("status", [405, 409, 413, 415, 422])
def test_other_4xx_is_request_rejected(client, fake_pagerduty, status):
    fake_pagerduty.inject(Fault.status(status), times=1)

    with pytest.raises(RequestRejected) as caught:
        post(client, fake_pagerduty.url)

    assert caught.value.status_code == status
    assert caught.value.retryable is False
    assert caught.value.message


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed(client, fake_pagerduty, status):
    # Pointing the redirect back at the fake shows whether a second request was made.
    fault = Fault.status(status, headers={"Location": fake_pagerduty.url})
    fake_pagerduty.inject(fault, times=1)

    with pytest.raises(RequestRejected) as caught:
        post(client, fake_pagerduty.url)

    assert caught.value.status_code == status
    assert caught.value.retryable is False
    assert "not followed" in str(caught.value)
    assert len(fake_pagerduty.received) == 1


# --- hints: chosen by what PagerDuty said, not only by its status ------------------------

# PagerDuty's own words in its 400 answers, as it sends them ("message": "Event object is
# invalid" each time); the fake words the same cases its own way (the tests below this list).
PAGERDUTY_LENGTH = "Length of 'routing_key' is incorrect (should be 32 characters)"
PAGERDUTY_ALPHANUMERIC = "'routing_key' cannot contain non-alphanumeric characters."
PAGERDUTY_NO_SUMMARY = "'payload.summary' is missing or blank"
PAGERDUTY_NO_SEVERITY = "'payload.severity' is missing or blank"


def invalid_event(*errors: str) -> Fault:
    return Fault.status(
        400,
        body={"status": "invalid event", "message": "Event object is invalid", "errors": errors},
    )


@pytest.mark.parametrize(
    ("errors", "hint"),
    [
        (["Invalid routing key"], UNKNOWN_KEY_HINT),
        ([PAGERDUTY_LENGTH], MALFORMED_KEY_HINT),
        ([PAGERDUTY_LENGTH, PAGERDUTY_ALPHANUMERIC], MALFORMED_KEY_HINT),
        ([PAGERDUTY_NO_SUMMARY], EVENT_FIELD_HINT),
        ([PAGERDUTY_NO_SEVERITY], EVENT_FIELD_HINT),
        # While the key is wrong, PagerDuty cannot place the event: the key's hint comes first.
        ([PAGERDUTY_NO_SUMMARY, PAGERDUTY_LENGTH], MALFORMED_KEY_HINT),
        # Nothing said beyond the status: the status's hint.
        ([], EventRejected.hint),
    ],
)
def test_a_400_gets_the_hint_for_what_pagerduty_said(client, fake_pagerduty, errors, hint):
    fake_pagerduty.inject(invalid_event(*errors), times=1)

    with pytest.raises(EventRejected) as caught:
        post(client, fake_pagerduty.url)

    assert caught.value.errors == errors
    assert caught.value.hint == hint


def test_the_fakes_wrong_length_answer_gets_the_malformed_key_hint(client, fake_pagerduty):
    short = KEY[:20]

    with pytest.raises(EventRejected) as caught:
        client.send(
            event_body(routing_key=short), routing_key=short, url=fake_pagerduty.url, timeout=5
        )

    assert caught.value.errors == ["routing_key must be 32 characters; got 20"]
    assert caught.value.hint == MALFORMED_KEY_HINT


def test_the_fakes_answer_to_a_key_with_other_characters_gets_the_malformed_key_hint(
    client, fake_pagerduty
):
    odd = KEY[:31] + "-"

    with pytest.raises(EventRejected) as caught:
        client.send(event_body(routing_key=odd), routing_key=odd, url=fake_pagerduty.url, timeout=5)

    assert any("routing_key must contain only" in error for error in caught.value.errors)
    assert caught.value.hint == MALFORMED_KEY_HINT


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        ({"summary": "s", "source": "detection-destinations"}, "payload.severity is required"),
        ({"severity": "error", "source": "detection-destinations"}, "payload.summary is required"),
        (
            {"summary": " ", "severity": "error", "source": "detection-destinations"},
            "payload.summary must not be blank",
        ),
    ],
)
def test_the_fakes_answer_to_a_missing_field_gets_the_event_field_hint(
    client, fake_pagerduty, payload, error
):
    with pytest.raises(EventRejected) as caught:
        post(client, fake_pagerduty.url, body=event_body(payload=payload))

    assert caught.value.errors == [error]
    assert caught.value.hint == EVENT_FIELD_HINT


@pytest.mark.parametrize(
    ("fault", "error_class", "hint"),
    [
        # Not PagerDuty's "No integration found": a 404 from a proxy or a wrong URL says nothing
        # about the key's integration, so it gets the status's hint.
        (Fault.status(404, body={"message": "Not Found"}), KeyRejected, KeyRejected.hint),
        (Fault.status(429), RateLimited, RateLimited.hint),
        (Fault.status(500), ServerError, ServerError.hint),
        (Fault.status(502), ServerError, ServerError.hint),
    ],
)
def test_other_answers_keep_the_hint_of_their_status(
    client, fake_pagerduty, fault, error_class, hint
):
    fake_pagerduty.inject(fault, times=1)

    with pytest.raises(error_class) as caught:
        post(client, fake_pagerduty.url)

    assert caught.value.hint == hint


def test_the_hint_survives_pickling():
    error = KeyRejected("The integration for this routing key is disabled", status_code=403)
    assert pickle.loads(pickle.dumps(error)).hint == DISABLED_KEY_HINT  # noqa: S301


# --- rate limits and server errors -------------------------------------------------------


def test_429_with_retry_after_seconds(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "3"}), times=1)

    with pytest.raises(RateLimited) as caught:
        post(client, fake_pagerduty.url)

    assert caught.value.status_code == 429
    assert caught.value.retryable is True
    assert caught.value.retry_after == 3.0
    assert str(caught.value) == (
        "PagerDuty answered 429: Requests for this service are arriving too quickly. "
        "Please retry later (retry after 3 seconds)"
    )


def test_429_with_retry_after_http_date(client, fake_pagerduty):
    later = datetime.now(UTC) + timedelta(seconds=30)
    fault = Fault.status(429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    fake_pagerduty.inject(fault, times=1)

    with pytest.raises(RateLimited) as caught:
        post(client, fake_pagerduty.url)

    # The date has whole seconds, and some time passes before it is read.
    assert 25 <= caught.value.retry_after <= 30


def test_429_without_retry_after(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.status(429), times=1)

    with pytest.raises(RateLimited) as caught:
        post(client, fake_pagerduty.url)

    assert caught.value.retry_after is None
    assert caught.value.retryable is True


def test_429_then_accepted_on_the_next_send(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "1"}), times=1)

    with pytest.raises(RateLimited):
        post(client, fake_pagerduty.url)

    assert post(client, fake_pagerduty.url).message == "Event processed"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_a_retryable_server_error(client, fake_pagerduty, status):
    fake_pagerduty.inject(Fault.status(status), times=1)

    with pytest.raises(ServerError) as caught:
        post(client, fake_pagerduty.url)

    error = caught.value
    assert error.status_code == status
    assert error.retryable is True
    assert error.retry_after is None
    assert error.hint.startswith("PagerDuty unreachable or failing")
    assert str(error).startswith(f"PagerDuty answered {status}: ")


# --- no answer ---------------------------------------------------------------------------


def test_slow_answer_is_a_timeout(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.delay(2), times=1)

    with pytest.raises(Timeout) as caught:
        post(client, fake_pagerduty.url, timeout=0.2)

    error = caught.value
    assert isinstance(error, Unreachable)
    assert isinstance(error, TimeoutError)
    assert isinstance(error, ConnectionError)
    assert error.retryable is True
    assert error.status_code is None
    assert "0.2 seconds" in str(error)
    assert 150 <= error.duration_ms < 2000


def test_reset_connection_is_unreachable(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.reset(), times=1)

    with pytest.raises(Unreachable) as caught:
        post(client, fake_pagerduty.url)

    assert not isinstance(caught.value, Timeout)
    assert caught.value.retryable is True
    assert caught.value.status_code is None
    assert str(caught.value).startswith("PagerDuty could not be reached: ")


def test_dropped_connection_is_unreachable(client, fake_pagerduty):
    fake_pagerduty.inject(Fault.drop(), times=1)

    with pytest.raises(Unreachable) as caught:
        post(client, fake_pagerduty.url)

    assert not isinstance(caught.value, Timeout)
    assert caught.value.retryable is True


def test_refused_connection_is_unreachable(client, settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # The port is closed again, so connecting to it is refused.
    settings.PAGERDUTY_EVENTS_URL = f"http://127.0.0.1:{port}/v2/enqueue"

    with pytest.raises(Unreachable) as caught:
        post(client, settings.PAGERDUTY_EVENTS_URL)

    assert not isinstance(caught.value, Timeout)
    assert str(caught.value) == (
        f"PagerDuty could not be reached: connection refused (127.0.0.1:{port})"
    )
    assert_scrubbed(caught.value)


# --- connections -------------------------------------------------------------------------


def test_several_sends_reuse_one_connection(client, fake_pagerduty):
    ports = []
    for _ in range(3):
        post(client, fake_pagerduty.url)
        ports.append(open_local_ports(client, fake_pagerduty.url))

    assert [record.status for record in fake_pagerduty.received] == [202, 202, 202]
    # One open socket, on the same local port after every send: one TCP connection throughout.
    assert len(ports[0]) == 1
    assert ports[0] == ports[1] == ports[2]


def test_get_client_is_one_per_thread():
    seen: list[PagerDutyClient] = []
    worker = threading.Thread(target=lambda: seen.append(get_client()))
    worker.start()
    worker.join()

    assert get_client() is get_client()
    assert seen[0] is not get_client()


# --- URLs --------------------------------------------------------------------------------


def test_region_picks_the_url(settings):
    settings.PAGERDUTY_EVENTS_URL = None

    assert events_url("us") == US_EVENTS_URL == "https://events.pagerduty.com/v2/enqueue"
    assert events_url("eu") == EU_EVENTS_URL == "https://events.eu.pagerduty.com/v2/enqueue"


def test_pagerduty_events_url_overrides_every_region(settings):
    settings.PAGERDUTY_EVENTS_URL = "http://proxy.internal:8080/v2/enqueue"

    assert events_url("us") == "http://proxy.internal:8080/v2/enqueue"
    assert events_url("eu") == "http://proxy.internal:8080/v2/enqueue"


@pytest.mark.parametrize("override", [None, "http://proxy.internal:8080/v2/enqueue"])
@pytest.mark.parametrize("region", ["", "US", "ap", "https://attacker.example/"])
def test_unknown_region_is_refused(settings, override, region):
    settings.PAGERDUTY_EVENTS_URL = override

    with pytest.raises(ValueError, match="Unknown PagerDuty region"):
        events_url(region)


@responses.activate
@pytest.mark.parametrize(
    "url", ["https://attacker.example/v2/enqueue", US_EVENTS_URL, "http://127.0.0.1:1/x"]
)
def test_send_refuses_any_url_events_url_could_not_return(client, settings, url):
    settings.PAGERDUTY_EVENTS_URL = "http://proxy.internal:8080/v2/enqueue"

    with pytest.raises(ValueError, match="Refusing to post"):
        post(client, url)

    assert len(responses.calls) == 0


# --- the key never leaks -----------------------------------------------------------------


ECHOING_ANSWERS = [
    (200, {"status": "success", "message": f"Event processed for {KEY}", "dedup_key": KEY}),
    (202, {"status": "success", "message": "Event processed", "dedup_key": DEDUP_KEY}),
    (400, {"status": "invalid event", "message": f"Bad {KEY}", "errors": [f"key {KEY} unknown"]}),
    (401, {"message": f"Unauthorized: {KEY}"}),
    (404, {"message": "Not found", "errors": f"no integration {KEY}"}),
    (413, {"message": f"Too large for {KEY}"}),
    (429, {"message": f"Slow down, {KEY}"}),
    (500, {"message": f"Internal error for {KEY}"}),
]


@responses.activate
@pytest.mark.parametrize(("status", "answer"), ECHOING_ANSWERS)
def test_key_echoed_by_the_server_is_scrubbed(client, settings, caplog, status, answer):
    caplog.set_level(logging.DEBUG, logger="destinations.pagerduty")
    settings.PAGERDUTY_EVENTS_URL = None
    # Also echo the whole request body, key included, the way a debugging proxy might.
    answer = {**answer, "echo": json.loads(event_body())}
    responses.post(US_EVENTS_URL, json=answer, status=status, headers={"X-Key": KEY})

    if status < 300:
        accepted = post(client, US_EVENTS_URL)
        assert_no_key(accepted, repr(accepted))
        assert MASKED_KEY in accepted.response_excerpt
    else:
        with pytest.raises(PagerDutyError) as caught:
            post(client, US_EVENTS_URL)
        assert_scrubbed(caught.value)
        assert MASKED_KEY in caught.value.response_excerpt
    assert_no_key(caplog.text)


@responses.activate
def test_key_in_a_redirect_location_is_scrubbed(client, settings):
    settings.PAGERDUTY_EVENTS_URL = None
    location = f"https://elsewhere.example/collect?key={KEY}"
    responses.post(US_EVENTS_URL, status=307, headers={"Location": location})

    with pytest.raises(RequestRejected) as caught:
        post(client, US_EVENTS_URL)

    assert_scrubbed(caught.value)
    assert MASKED_KEY in str(caught.value)
    assert len(responses.calls) == 1


@responses.activate
@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError(f"proxy said: no route for {KEY}"),
        requests.ReadTimeout(f"read timed out while sending {KEY}"),
        requests.exceptions.ChunkedEncodingError(f"broken chunk near {KEY}"),
    ],
)
def test_key_in_a_transport_failure_is_scrubbed(client, settings, failure):
    settings.PAGERDUTY_EVENTS_URL = None
    responses.post(US_EVENTS_URL, body=failure)

    with pytest.raises(Unreachable) as caught:
        post(client, US_EVENTS_URL)

    assert_scrubbed(caught.value)
    # Not chained: the original exception holds the request body, and so the key.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


@responses.activate
def test_response_excerpt_is_capped(client, settings):
    settings.PAGERDUTY_EVENTS_URL = None
    answer = {"status": "success", "message": "Event processed", "padding": "x" * 10_000}
    responses.post(US_EVENTS_URL, json=answer, status=202)

    accepted = post(client, US_EVENTS_URL)

    assert len(accepted.response_excerpt) == RESPONSE_EXCERPT_MAX
    assert accepted.message == "Event processed"


@responses.activate
def test_overlong_dedup_key_is_not_kept(client, settings):
    settings.PAGERDUTY_EVENTS_URL = None
    answer = {"status": "success", "message": "Event processed", "dedup_key": "d" * 256}
    responses.post(US_EVENTS_URL, json=answer, status=202)

    assert post(client, US_EVENTS_URL).dedup_key == ""


@responses.activate
def test_error_without_a_body_says_the_status_phrase(client, settings):
    settings.PAGERDUTY_EVENTS_URL = None
    responses.post(US_EVENTS_URL, body="", status=503)

    with pytest.raises(ServerError) as caught:
        post(client, US_EVENTS_URL)

    assert str(caught.value) == "PagerDuty answered 503: Service Unavailable"
    assert caught.value.errors == []


# --- the error classes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (301, RequestRejected),
        (307, RequestRejected),
        (400, EventRejected),
        (401, KeyRejected),
        (403, KeyRejected),
        (404, KeyRejected),
        (408, RequestRejected),
        (413, RequestRejected),
        (422, RequestRejected),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (599, ServerError),
    ],
)
def test_error_for_status(status, error_class):
    assert error_for_status(status) is error_class


def test_error_for_status_refuses_a_success():
    with pytest.raises(ValueError, match="success"):
        error_for_status(202)


def test_retryability_is_a_property_of_the_class():
    assert [cls.retryable for cls in (EventRejected, KeyRejected, RequestRejected)] == [
        False,
        False,
        False,
    ]
    assert [cls.retryable for cls in (RateLimited, ServerError, Unreachable, Timeout)] == [
        True,
        True,
        True,
        True,
    ]
    classes = (EventRejected, KeyRejected, RequestRejected, RateLimited, ServerError, Timeout)
    assert all(cls.hint.endswith(".") for cls in (*classes, Unreachable))


def test_error_reads_as_one_sentence_and_survives_pickling():
    error = EventRejected(
        "Event object is invalid",
        status_code=400,
        errors=["Invalid routing key"],
        response_excerpt='{"status":"invalid event"}',
        duration_ms=12,
    )

    assert str(error) == "PagerDuty answered 400: Event object is invalid (Invalid routing key)"
    assert repr(error).startswith(
        "EventRejected(status_code=400, message='Event object is invalid'"
    )
    # Our own bytes, pickled a line above: nothing untrusted is loaded.
    copy = pickle.loads(pickle.dumps(error))  # noqa: S301
    assert type(copy) is EventRejected
    assert str(copy) == str(error)
    assert (copy.message, copy.errors, copy.duration_ms) == (error.message, error.errors, 12)


# --- Retry-After -------------------------------------------------------------------------

NOW = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("3", 3.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Thu, 02 Jan 2025 03:04:35 GMT", 30.0),
        ("Thursday, 02-Jan-25 03:05:05 GMT", 60.0),
        ("Thu Jan  2 03:04:15 2025", 10.0),
        # A date in the past means "now", never a negative wait.
        ("Wed, 01 Jan 2025 00:00:00 GMT", 0.0),
        ("Thu, 02 Jan 2025 03:04:05 GMT", 0.0),
    ],
)
def test_parse_retry_after(value, seconds):
    assert parse_retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value",
    [None, "", "   ", "-5", "+5", "-1.5", "soon", "3 seconds", "1e3", "inf", "nan", "9" * 400],
)
def test_parse_retry_after_refuses_garbage(value):
    assert parse_retry_after(value, now=NOW) is None


def test_parse_retry_after_counts_from_the_real_clock_by_default():
    later = datetime.now(UTC) + timedelta(seconds=60)

    assert 55 <= parse_retry_after(format_datetime(later, usegmt=True)) <= 60


class _RecordingProxy(http.server.BaseHTTPRequestHandler):
    """An HTTP proxy that answers every post itself, as PagerDuty would, and notes its target."""

    targets: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.targets.append(self.path)
        body = b'{"status":"success","message":"Event processed","dedup_key":"via-proxy"}'
        self.send_response(202)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def recording_proxy():
    _RecordingProxy.targets = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RecordingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _RecordingProxy.targets
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_the_environment_s_proxy_carries_every_post(
    client, settings, monkeypatch, recording_proxy, variable
):
    # The client posts without a requests Session, which would read the proxy on every post: it
    # reads what a Session would, once per URL, so a site behind a proxy still pages.
    proxy, targets = recording_proxy
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, proxy)
    settings.PAGERDUTY_EVENTS_URL = "http://events.pagerduty.invalid/v2/enqueue"

    for _ in range(2):
        accepted = post(client, settings.PAGERDUTY_EVENTS_URL)

    assert accepted.dedup_key == "via-proxy"
    assert targets == ["http://events.pagerduty.invalid/v2/enqueue"] * 2


def test_no_proxy_sends_past_the_environment_s_proxy(
    client, settings, monkeypatch, recording_proxy
):
    proxy, targets = recording_proxy
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("NO_PROXY", "events.pagerduty.invalid")
    monkeypatch.delenv("no_proxy", raising=False)
    settings.PAGERDUTY_EVENTS_URL = "http://events.pagerduty.invalid/v2/enqueue"

    with pytest.raises(Unreachable) as failed:
        post(client, settings.PAGERDUTY_EVENTS_URL)

    assert "host name not found" in str(failed.value)
    assert targets == []


def test_a_proxy_that_is_down_is_named_as_the_fault(client, settings, monkeypatch):
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://ops:proxy-secret@127.0.0.1:{port}")
    settings.PAGERDUTY_EVENTS_URL = "http://events.pagerduty.invalid/v2/enqueue"

    with pytest.raises(Unreachable) as failed:
        post(client, settings.PAGERDUTY_EVENTS_URL)

    assert str(failed.value) == (
        "PagerDuty could not be reached: the proxy failed: connection refused "
        f"(proxy 127.0.0.1:{port}, for events.pagerduty.invalid:80)"
    )
    assert "proxy-secret" not in str(failed.value)
