"""Test alerts through all three doors: the admin action, the change-page button, the command."""

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.urls import reverse

from destinations.models import (
    Delivery,
    DeliveryAttempt,
    DeliveryKind,
    DeliveryStatus,
    Destination,
)
from destinations.pagerduty.events import EVENT_MAX_BYTES, serialize_event
from destinations.services import preview_event, send_test_alert
from tests.support.admin_pages import change_url, shown_messages
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import MASKED_KEY, ROUTING_KEY

LIST_URL = reverse("admin:destinations_destination_changelist")


def button_url(destination) -> str:
    return reverse("admin:destinations_destination_test_alert", args=[destination.pk])


def test_button_sends_the_test_event_and_shows_pagerdutys_answer(
    admin_client, destination, fake_pagerduty
):
    page = admin_client.get(change_url(destination)).content.decode()
    assert 'id="send-test-alert"' in page
    assert "csrfmiddlewaretoken" in page

    response = admin_client.post(button_url(destination), follow=True)

    [received] = fake_pagerduty.received
    event = received.json
    assert received.status == 202
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["payload"]["summary"] == "Test alert from SecOps on-call"
    assert event["payload"]["severity"] == "info"
    assert event["payload"]["source"] == "test"
    assert event["payload"]["component"] == "auth"
    assert event["payload"]["custom_details"]["sent_by"] == "admin"
    assert event["dedup_key"].startswith("test-")
    [message] = shown_messages(response)
    assert "accepted by PagerDuty (202)" in message
    assert "Event processed" in message
    assert event["dedup_key"] in message

    delivery = Delivery.objects.get()
    assert delivery.kind == DeliveryKind.TEST
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.pagerduty_message == "Event processed"
    assert "routing_key" not in delivery.event
    assert DeliveryAttempt.objects.get(delivery=delivery).status_code == 202


def test_each_test_alert_has_its_own_dedup_key(admin_client, destination, fake_pagerduty):
    admin_client.post(button_url(destination))
    admin_client.post(button_url(destination))
    first, second = (event["dedup_key"] for event in fake_pagerduty.events)
    assert first != second


def test_button_with_resolve_closes_the_test_incident(admin_client, destination, fake_pagerduty):
    response = admin_client.post(button_url(destination), {"resolve": "1"}, follow=True)
    trigger, resolve = fake_pagerduty.events
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    assert "resolved right after" in shown_messages(response)[0]
    assert sorted(Delivery.objects.values_list("kind", flat=True)) == ["resolve", "test"]


@pytest.mark.parametrize(
    ("status", "hint"),
    [
        (400, "PagerDuty does not know this integration key. It is well-formed"),
        (401, "PagerDuty does not know this integration key. It is well-formed"),
        (403, "the integration for this key is disabled"),
        (404, "PagerDuty has no integration with this key"),
    ],
)
def test_refused_key_shows_status_errors_and_hint(
    admin_client, destination, fake_pagerduty, status, hint
):
    fake_pagerduty.refuse_key(ROUTING_KEY, status=status)
    response = admin_client.post(button_url(destination), follow=True)
    [message] = shown_messages(response)
    assert f"PagerDuty answered {status}" in message
    assert hint in message
    assert ROUTING_KEY not in message
    assert ROUTING_KEY not in response.content.decode()
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_status_code == status


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.status(429, headers={"Retry-After": "30"}), "429"),
        (Fault.status(503), "503"),
        (Fault.drop(), "could not be reached"),
    ],
)
def test_rate_limit_and_outage_are_reported_not_retried(
    admin_client, destination, fake_pagerduty, fault, expected
):
    fake_pagerduty.inject(fault)
    response = admin_client.post(button_url(destination), follow=True)
    [message] = shown_messages(response)
    assert "failed" in message
    assert expected in message
    assert Delivery.objects.get().status == DeliveryStatus.FAILED
    assert len(fake_pagerduty.received) == 1


def test_admin_action_sends_one_test_per_selected_destination(
    admin_client, destination, fake_pagerduty
):
    from destinations.models import Destination
    from tests.support.routing_keys import OTHER_ROUTING_KEY

    other = Destination(name="Platform on-call")
    other.set_routing_key(OTHER_ROUTING_KEY)
    other.save()
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, status=404)
    response = admin_client.post(
        LIST_URL,
        {"action": "send_test_alert", "_selected_action": [destination.pk, other.pk]},
        follow=True,
    )
    messages = shown_messages(response)
    assert any("“Platform on-call” failed: PagerDuty answered 404" in m for m in messages)
    assert any("“SecOps on-call” accepted by PagerDuty" in m for m in messages)
    assert len(fake_pagerduty.received) == 2


def test_sending_needs_the_change_permission(client, destination, fake_pagerduty):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_destination"))
    client.force_login(viewer)
    assert client.post(button_url(destination)).status_code == 403
    response = client.post(
        LIST_URL, {"action": "send_test_alert", "_selected_action": [destination.pk]}
    )
    assert response.status_code in (200, 302)
    assert fake_pagerduty.received == []
    assert 'id="send-test-alert"' not in client.get(change_url(destination)).content.decode()


def test_button_refuses_get(admin_client, destination, fake_pagerduty):
    assert admin_client.get(button_url(destination)).status_code == 405
    assert fake_pagerduty.received == []


def test_command_exits_zero_when_accepted(destination, fake_pagerduty, capsys):
    call_command("send_test_alert", "SecOps on-call", "--resolve")
    out = capsys.readouterr().out
    assert "accepted by PagerDuty (202)" in out
    assert "resolved right after" in out
    assert [e["event_action"] for e in fake_pagerduty.events] == ["trigger", "resolve"]
    assert ROUTING_KEY not in out


def test_command_finds_a_destination_by_id(destination, fake_pagerduty, capsys):
    call_command("send_test_alert", str(destination.pk))
    assert len(fake_pagerduty.events) == 1


def test_command_fails_readably_on_a_refused_key(destination, fake_pagerduty):
    fake_pagerduty.refuse_key(ROUTING_KEY, status=404)
    with pytest.raises(CommandError) as caught:
        call_command("send_test_alert", "SecOps on-call")
    assert "PagerDuty answered 404" in str(caught.value)
    assert "Hint:" in str(caught.value)
    assert ROUTING_KEY not in str(caught.value)


def test_command_fails_readably_when_unreachable(destination, settings):
    settings.PAGERDUTY_EVENTS_URL = "http://127.0.0.1:9/v2/enqueue"  # nothing listens there
    with pytest.raises(CommandError, match="could not be reached"):
        call_command("send_test_alert", "SecOps on-call")


def test_command_names_an_unknown_destination(destination):
    with pytest.raises(CommandError, match="No destination named or numbered “nope”"):
        call_command("send_test_alert", "nope")


# What the test alert's answer says about the incident it opened


def test_a_test_not_resolved_says_an_incident_is_now_open(destination, fake_pagerduty, capsys):
    call_command("send_test_alert", "SecOps on-call")

    [event] = fake_pagerduty.events
    out = capsys.readouterr().out
    assert out.strip().endswith(
        f"dedup_key {event['dedup_key']}. An incident is now open in PagerDuty: resolve it there."
    )


def test_a_failed_resolve_says_the_incident_is_still_open(destination, fake_pagerduty):
    # The trigger is answered as usual, the resolve right after it with a 503.
    fake_pagerduty.inject(Fault.delay(0))
    fake_pagerduty.inject(Fault.status(503))

    outcome = send_test_alert(destination=destination, sent_by="admin", resolve=True)

    assert outcome.accepted
    assert outcome.incident_open
    assert (
        f"The incident is still open: resolve incident {outcome.dedup_key} in PagerDuty by hand."
        in outcome.summary()
    )


def test_the_list_action_says_which_action_resolves(admin_client, destination, fake_pagerduty):
    response = admin_client.post(
        LIST_URL, {"action": "send_test_alert", "_selected_action": [destination.pk]}, follow=True
    )

    [message] = shown_messages(response)
    assert message.endswith(
        "An incident is now open in PagerDuty: resolve it there, or use the action "
        "“Send test alert and resolve it right after” to leave none open."
    )


def test_an_unsaved_destination_is_tested_with_its_values_and_not_logged(db, fake_pagerduty):
    unsaved = Destination(name="Payments on-call", component="payments", region="us")
    unsaved.set_routing_key(ROUTING_KEY)

    outcome = send_test_alert(destination=unsaved, sent_by="admin", routing_key=ROUTING_KEY)

    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY
    assert event["payload"]["summary"] == "Test alert from Payments on-call"
    assert event["payload"]["component"] == "payments"
    assert event["payload"]["custom_details"]["tested_key"] == MASKED_KEY
    assert outcome.accepted and not outcome.logged
    assert outcome.dedup_key == event["dedup_key"]
    assert outcome.summary().endswith(
        "An incident is now open in PagerDuty: resolve it there. "
        "Not logged: the destination is not saved yet."
    )
    assert not Destination.objects.exists()
    assert not Delivery.objects.exists()


# The event preview


def test_preview_size_counts_the_real_key_length_but_shows_only_the_mask(configured_destination):
    preview = preview_event(configured_destination)

    event = {name: value for name, value in preview.event.items() if name != "routing_key"}
    assert preview.size == len(serialize_event(event, routing_key=ROUTING_KEY))
    assert preview.limit == EVENT_MAX_BYTES
    assert preview.event["routing_key"] == MASKED_KEY
    assert ROUTING_KEY not in preview.json
    assert next(iter(preview.event)) == "routing_key"  # as posted: the key first
