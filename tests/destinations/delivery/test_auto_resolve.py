"""Auto-resolve end to end: runs posted to the API, the worker, what PagerDuty received."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from destinations.pagerduty.events import dedup_key_for
from tests.support.factories import (
    DETECTION_NAME,
    drain,
    make_destination,
    make_detection,
    post_run,
    run_body,
)
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db(transaction=True)

INCIDENT = dedup_key_for(DETECTION_NAME)
RESOLVE = {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": INCIDENT}


@pytest.fixture
def resolving(db):
    """An auto-resolving destination attached to the suite's detection."""
    destination = make_destination("SecOps on-call", ROUTING_KEY, auto_resolve=True)
    make_detection(DETECTION_NAME, destination)
    return destination


def post(client, token, run_id: str, *, matched: bool) -> dict:
    response = post_run(client, run_body(run_id=run_id, match_count=5 if matched else 0), token)
    assert response.status_code == 201, response.content
    return response.json()


def deliver() -> None:
    call_command("deliver_alerts", "--once", stdout=io.StringIO())


def actions(fake_pagerduty) -> list[str]:
    """The event_action of each event PagerDuty accepted for the incident, in arrival order."""
    return [e["event_action"] for e in fake_pagerduty.events if e["dedup_key"] == INCIDENT]


def test_matched_then_not_matched_triggers_then_resolves(client, token, resolving, fake_pagerduty):
    post(client, token, "run-1", matched=True)
    deliver()
    answer = post(client, token, "run-2", matched=False)
    deliver()

    assert answer["outcome"] == "NOT_MATCHED"
    assert [d["destination"] for d in answer["deliveries"]] == ["SecOps on-call"]
    trigger, resolve = fake_pagerduty.events
    assert (trigger["event_action"], trigger["dedup_key"]) == ("trigger", INCIDENT)
    assert resolve == RESOLVE  # PagerDuty's resolve: no payload


def test_the_resolve_waits_for_a_trigger_that_was_rate_limited(
    client, token, resolving, fake_pagerduty
):
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "30"}))
    post(client, token, "run-1", matched=True)
    start = timezone.now()
    drain(at=start)  # the trigger meets 429 and is due again in 30 seconds
    assert [r.status for r in fake_pagerduty.received] == [429]
    post(client, token, "run-2", matched=False)

    # The resolve is due at once; a worker looking now must leave it behind the trigger.
    drain(at=start + timedelta(seconds=1))
    assert [(r.json["event_action"], r.status) for r in fake_pagerduty.received] == [
        ("trigger", 429)
    ]

    drain(at=start + timedelta(seconds=30))
    assert [(r.json["event_action"], r.status) for r in fake_pagerduty.received] == [
        ("trigger", 429),
        ("trigger", 202),
        ("resolve", 202),
    ]
    assert fake_pagerduty.events[-1] == RESOLVE


def test_a_second_not_matched_run_sends_no_second_resolve(client, token, resolving, fake_pagerduty):
    post(client, token, "run-1", matched=True)
    deliver()
    post(client, token, "run-2", matched=False)
    deliver()
    answer = post(client, token, "run-3", matched=False)
    deliver()

    assert answer["deliveries"] == []
    assert actions(fake_pagerduty) == ["trigger", "resolve"]

    # The incident opens again, and the next clear resolves it again.
    post(client, token, "run-4", matched=True)
    post(client, token, "run-5", matched=False)
    deliver()
    assert actions(fake_pagerduty) == ["trigger", "resolve", "trigger", "resolve"]


def test_nothing_is_resolved_without_auto_resolve_a_trigger_or_an_enabled_detection(
    client, token, fake_pagerduty
):
    manual = make_destination("Platform on-call", OTHER_ROUTING_KEY)  # the default: off
    resolving = make_destination("SecOps on-call", ROUTING_KEY, auto_resolve=True)
    detection = make_detection(DETECTION_NAME, manual, resolving)

    post(client, token, "run-1", matched=False)  # nothing was ever triggered
    assert Delivery.objects.count() == 0

    post(client, token, "run-2", matched=True)
    deliver()
    detection.enabled = False
    detection.save()
    post(client, token, "run-3", matched=False)  # a disabled detection resolves nothing
    deliver()

    assert [e["event_action"] for e in fake_pagerduty.events] == ["trigger", "trigger"]
    assert not Delivery.objects.filter(kind=DeliveryKind.RESOLVE).exists()


def rotate_key(monkeypatch, destination) -> None:
    """Rotate the destination's key as an operator does (the command tests the new key first)."""
    monkeypatch.setattr("sys.stdin", io.StringIO(OTHER_ROUTING_KEY + "\n"))
    call_command("rotate_routing_key", destination.name, stdout=io.StringIO())


def assert_resolve_not_sent(fake_pagerduty) -> None:
    assert actions(fake_pagerduty) == ["trigger"]
    resolve = Delivery.objects.get(kind=DeliveryKind.RESOLVE, run__isnull=False)
    assert resolve.status == DeliveryStatus.FAILED
    assert resolve.total_attempts == 0 and not resolve.attempt_log.exists()
    assert resolve.last_error == (
        "Not sent: the routing key was rotated after the trigger was sent, so PagerDuty would "
        "not match this resolve to the incident (it belongs to the old key's integration). "
        f"Resolve incident {INCIDENT} by hand in PagerDuty."
    )


def test_a_rotated_key_sends_no_resolve_and_the_log_says_so(
    client, token, resolving, fake_pagerduty, monkeypatch
):
    post(client, token, "run-1", matched=True)
    deliver()
    rotate_key(monkeypatch, resolving)

    answer = post(client, token, "run-2", matched=False)
    deliver()

    assert answer["deliveries"] == [
        {"id": answer["deliveries"][0]["id"], "destination": "SecOps on-call", "status": "failed"}
    ]
    assert_resolve_not_sent(fake_pagerduty)
    # Logged once: a later clear finds the unsent resolve last and queues nothing more.
    post(client, token, "run-3", matched=False)
    assert Delivery.objects.filter(kind=DeliveryKind.RESOLVE, run__isnull=False).count() == 1


def test_a_key_rotated_after_the_resolve_was_queued_sends_no_resolve(
    client, token, resolving, fake_pagerduty, monkeypatch
):
    post(client, token, "run-1", matched=True)
    deliver()
    post(client, token, "run-2", matched=False)
    rotate_key(monkeypatch, resolving)  # before any worker took the resolve

    deliver()

    assert_resolve_not_sent(fake_pagerduty)


def test_a_trigger_sent_after_the_rotation_is_resolved_through_the_new_key(
    client, token, resolving, fake_pagerduty, monkeypatch
):
    fake_pagerduty.inject(Fault.status(503))
    post(client, token, "run-1", matched=True)
    deliver()  # the trigger is not through yet when the key is rotated
    rotate_key(monkeypatch, resolving)
    post(client, token, "run-2", matched=False)
    trigger = Delivery.objects.get(kind=DeliveryKind.TRIGGER)
    drain(at=trigger.next_attempt_at)

    incident = [e for e in fake_pagerduty.events if e["dedup_key"] == INCIDENT]
    assert [(e["event_action"], e["routing_key"]) for e in incident] == [
        ("trigger", OTHER_ROUTING_KEY),
        ("resolve", OTHER_ROUTING_KEY),
    ]
