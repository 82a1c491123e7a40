"""Fallback: a page that fails for good goes once to its destination's fallback."""

import html

import pytest
from django.urls import reverse

from destinations.health import delivery_health
from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from destinations.pagerduty.events import build_resolve_event
from tests.support.admin_pages import change_url, page_text
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

THIRD_KEY = "C" * 32
REPLAY_LINK = "https://app.example.com/replay/7"


@pytest.fixture
def main(fake_pagerduty):
    """ "SecOps on-call" (ROUTING_KEY), falling back to "Platform on-call" (OTHER_ROUTING_KEY)."""
    fallback = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    main = make_destination("SecOps on-call", ROUTING_KEY, fallback=fallback)
    make_detection(DETECTION_NAME, main, severity="HIGH")
    return main


def delivery_url(delivery: Delivery) -> str:
    return reverse("admin:destinations_delivery_change", args=[delivery.pk])


def without(event: dict, *names: str) -> dict:
    """The event without the routing key and without the named custom details."""
    payload = dict(event["payload"])
    payload["custom_details"] = {
        name: value for name, value in payload["custom_details"].items() if name not in names
    }
    return {**{k: v for k, v in event.items() if k != "routing_key"}, "payload": payload}


def test_a_400_on_the_main_destination_delivers_the_same_event_to_the_fallback(
    client, admin_client, token, main, fake_pagerduty
):
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)  # the key was revoked
    assert post_run(client, run_body(replay_link=REPLAY_LINK), token).status_code == 201

    stats = drain()

    refused, accepted = fake_pagerduty.received
    assert (refused.json["routing_key"], refused.status) == (ROUTING_KEY, 400)
    assert (accepted.json["routing_key"], accepted.status) == (OTHER_ROUTING_KEY, 202)
    fallen_back = accepted.json
    assert fallen_back["payload"]["custom_details"]["_fallback_from"] == {
        "destination": "SecOps on-call",
        "reason": "PagerDuty answered 400: Event object is invalid (Invalid routing key)",
    }
    # The same event, dedup key and all: only the note was added.
    assert without(fallen_back, "_fallback_from") == without(refused.json)
    assert fallen_back["dedup_key"] == refused.json["dedup_key"]
    assert (stats.delivered, stats.failed) == (1, 1)

    original = Delivery.objects.get(destination=main)
    fallback = Delivery.objects.get(destination=main.fallback)
    assert (original.status, fallback.status) == (DeliveryStatus.FAILED, DeliveryStatus.DELIVERED)
    assert (fallback.fallback_of, fallback.run, fallback.kind) == (
        original,
        original.run,
        DeliveryKind.TRIGGER,
    )

    # The delivery log links the two.
    original_page = html.unescape(admin_client.get(delivery_url(original)).content.decode())
    assert f'fell back to <a href="{delivery_url(fallback)}">#{fallback.pk}</a>' in original_page
    assert "Platform on-call" in original_page
    fallback_page = html.unescape(admin_client.get(delivery_url(fallback)).content.decode())
    assert f'fallback of <a href="{delivery_url(original)}">#{original.pk}</a>' in fallback_page

    # The page still failed for its own destination: /healthz and the health page say so.
    assert client.get("/healthz").json()["failed_last_24h"] == 1
    figures = {row.name: (row.delivered, row.failed) for row in delivery_health().destinations}
    assert figures == {"SecOps on-call": (0, 1), "Platform on-call": (1, 0)}


def test_a_failing_fallback_does_not_cascade(client, token, fake_pagerduty):
    last_resort = make_destination("Last resort", THIRD_KEY)
    fallback = make_destination("Platform on-call", OTHER_ROUTING_KEY, fallback=last_resort)
    main = make_destination("SecOps on-call", ROUTING_KEY, fallback=fallback)
    make_detection(DETECTION_NAME, main)
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, 404)
    assert post_run(client, run_body(), token).status_code == 201

    drain()

    assert [(r.json["routing_key"], r.status) for r in fake_pagerduty.received] == [
        (ROUTING_KEY, 400),
        (OTHER_ROUTING_KEY, 404),
    ]
    assert fake_pagerduty.events == []  # nothing reached "Last resort"
    assert sorted(Delivery.objects.values_list("destination__name", "status")) == [
        ("Platform on-call", "failed"),
        ("SecOps on-call", "failed"),
    ]


def test_giving_up_after_the_attempt_limit_falls_back_too(
    client, token, main, fake_pagerduty, settings
):
    settings.DELIVERY_MAX_ATTEMPTS = 1
    fake_pagerduty.inject(Fault.status(503))
    assert post_run(client, run_body(), token).status_code == 201

    drain()

    [event] = fake_pagerduty.events
    assert event["routing_key"] == OTHER_ROUTING_KEY
    reason = event["payload"]["custom_details"]["_fallback_from"]["reason"]
    assert reason.startswith("PagerDuty answered 503")
    assert "gave up after 1 attempt" in reason


def test_a_disabled_fallback_gets_nothing_and_the_log_says_so(
    client, admin_client, token, main, fake_pagerduty
):
    main.fallback.enabled = False
    main.fallback.save()
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)
    assert post_run(client, run_body(), token).status_code == 201

    drain()

    assert len(fake_pagerduty.received) == 1
    [original] = Delivery.objects.all()
    assert original.status == DeliveryStatus.FAILED
    note = "not sent to the fallback “Platform on-call”: it is disabled"
    assert original.last_error.endswith(note)
    assert note in page_text(admin_client.get(delivery_url(original)))


def test_a_fallback_the_run_pages_already_is_not_paged_twice(client, token, main, fake_pagerduty):
    main.detections.get().destinations.add(main.fallback)
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)
    assert post_run(client, run_body(), token).status_code == 201

    drain()

    [event] = fake_pagerduty.events
    assert event["routing_key"] == OTHER_ROUTING_KEY
    assert "_fallback_from" not in event["payload"]["custom_details"]
    original = Delivery.objects.get(destination=main)
    assert "not sent to the fallback “Platform on-call”: this run pages it" in original.last_error


def test_a_retried_failure_does_not_fall_back_twice(
    client, admin_client, token, main, fake_pagerduty
):
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)
    assert post_run(client, run_body(), token).status_code == 201
    drain()
    original = Delivery.objects.get(destination=main)

    admin_client.post(
        reverse("admin:destinations_delivery_changelist"),
        {"action": "retry_now_action", "_selected_action": [original.pk]},
    )
    drain()

    assert [r.json["routing_key"] for r in fake_pagerduty.received] == [
        ROUTING_KEY,
        OTHER_ROUTING_KEY,
        ROUTING_KEY,
    ]
    assert Delivery.objects.filter(destination=main.fallback).count() == 1


def test_test_alerts_never_fall_back(admin_client, main, fake_pagerduty):
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)

    admin_client.post(reverse("admin:destinations_destination_test_alert", args=[main.pk]))
    drain()

    assert [r.json["routing_key"] for r in fake_pagerduty.received] == [ROUTING_KEY]
    assert not Delivery.objects.filter(destination=main.fallback).exists()


def queue_resolve(destination) -> Delivery:
    """The resolve the outbox queues for the detection's incident (as auto-resolve does)."""
    event = build_resolve_event(dedup_key=Delivery.objects.first().dedup_key)
    return Delivery.objects.create(
        destination=destination,
        kind=DeliveryKind.RESOLVE,
        event=event,
        dedup_key=event["dedup_key"],
    )


def test_a_failed_resolve_follows_its_trigger_to_the_fallback(client, token, main, fake_pagerduty):
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)
    assert post_run(client, run_body(), token).status_code == 201
    drain()
    resolve = queue_resolve(main)

    drain()

    *_, refused, resolved = fake_pagerduty.received
    assert (refused.json["event_action"], refused.status) == ("resolve", 400)
    assert resolved.json == {
        "routing_key": OTHER_ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": resolve.dedup_key,
    }
    assert Delivery.objects.get(fallback_of=resolve).status == DeliveryStatus.DELIVERED


def test_a_failed_resolve_of_an_incident_opened_here_does_not_fall_back(
    client, token, main, fake_pagerduty
):
    assert post_run(client, run_body(), token).status_code == 201
    drain()  # the trigger reached "SecOps on-call" itself
    fake_pagerduty.refuse_key(ROUTING_KEY, 400)
    queue_resolve(main)

    drain()

    assert [r.json["routing_key"] for r in fake_pagerduty.received] == [ROUTING_KEY, ROUTING_KEY]
    assert not Delivery.objects.filter(destination=main.fallback).exists()


def test_the_destination_list_names_each_fallback(admin_client, main):
    page = page_text(admin_client.get(reverse("admin:destinations_destination_changelist")))
    assert "Falls back to" in page
    row = page[page.index(f'href="{change_url(main)}"') :]
    assert "Platform on-call" in row[: row.index("</tr>")]
