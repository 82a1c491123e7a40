"""The destinations admin as an admin sees it: refusals with messages, the key never shown."""

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from destinations.models import Delivery, Destination
from destinations.pagerduty.events import dedup_key_for
from destinations.services import SAMPLE_DETECTION_NAME, SAMPLE_REPLAY_LINK, preview_event
from tests.support.admin_pages import (
    change_url,
    destination_form_data,
    field_errors,
    page_text,
    shown_messages,
)
from tests.support.factories import make_destination
from tests.support.rendered_forms import rendered_form_data
from tests.support.routing_keys import MASKED_KEY, OTHER_ROUTING_KEY, ROUTING_KEY

ADD_URL = reverse("admin:destinations_destination_add")
LIST_URL = reverse("admin:destinations_destination_changelist")


def test_create_stores_the_key_encrypted_and_shows_it_masked(admin_client):
    response = admin_client.post(ADD_URL, destination_form_data(routing_key=f"  {ROUTING_KEY}\n"))
    assert response.status_code == 302, response.context and response.context["errors"]
    dest = Destination.objects.get(name="SecOps on-call")
    assert dest.routing_key == ROUTING_KEY  # whitespace stripped
    assert dest.routing_key_rotated_at is not None
    assert dest.custom_details == {}

    listing = admin_client.get(LIST_URL).content.decode()
    assert "••••" + ROUTING_KEY[-4:] in listing
    assert ROUTING_KEY not in listing


@pytest.mark.parametrize(
    ("key", "message"),
    [
        # The example key of PagerDuty set-up guides has 33 characters.
        (
            "R0123456789ABCDEF0123456789ABCDEF",
            "The integration key must be 32 characters; this one has 33.",
        ),
        ("abc", "The integration key must be 32 characters; this one has 3."),
        (
            "Rk7Q2mZp9LxW4vT8nB3cY6hJ1dF5g-0e",
            "The integration key may contain only letters A–Z, a–z and digits 0–9; this one has 1",
        ),
        ("", "Enter the integration key."),
    ],
)
def test_malformed_keys_are_refused_with_a_reason(admin_client, key, message):
    response = admin_client.post(ADD_URL, destination_form_data(routing_key=key))
    assert response.status_code == 200
    errors = field_errors(response, "routing_key")
    assert any(message in error for error in errors), errors
    assert not Destination.objects.exists()
    page = response.content.decode()
    assert message.split(";")[0] in page.replace("&#x27;", "'")
    if key:
        assert key not in page  # the refused key is not echoed back either


@pytest.mark.parametrize(
    ("details", "message"),
    [
        (
            '{"team": "secops",\n  "oops"}',
            "not valid JSON: Expecting ':' delimiter at line 2, column 9",
        ),
        ('["a", "b"]', "Custom details must be a JSON object"),
        ('"text"', "got a string"),
        ("42", "got a number"),
        (
            '{"run_id": 1, "severity": "x", "team": "ok"}',
            "These names are reserved for the detection's own details: run_id, severity.",
        ),
        ('{"blob": "' + "x" * (64 * 1024) + '"}', "Custom details must be at most 64 KB"),
    ],
)
def test_bad_custom_details_are_refused_precisely(admin_client, details, message):
    response = admin_client.post(ADD_URL, destination_form_data(custom_details=details))
    assert response.status_code == 200
    errors = field_errors(response, "custom_details")
    assert any(message in error for error in errors), errors
    assert not Destination.objects.exists()
    # What the admin typed is kept, exactly, so it can be fixed.
    assert escape(details) in response.content.decode()


def test_custom_details_object_is_saved(admin_client):
    response = admin_client.post(
        ADD_URL,
        destination_form_data(custom_details='{"team": "secops", "runbook": "https://wiki/x"}'),
    )
    assert response.status_code == 302
    assert Destination.objects.get().custom_details == {
        "team": "secops",
        "runbook": "https://wiki/x",
    }


@pytest.mark.parametrize("timeout", ["0", "121", "-5"])
def test_timeout_outside_1_to_120_is_refused(admin_client, timeout):
    response = admin_client.post(ADD_URL, destination_form_data(timeout_seconds=timeout))
    assert response.status_code == 200
    assert field_errors(response, "timeout_seconds")
    assert not Destination.objects.exists()


def test_severity_override_offers_automatic_and_the_four_severities(admin_client):
    page = admin_client.get(ADD_URL).content.decode()
    assert "Automatic (from detection severity)" in page
    for label in ("Critical", "Error", "Warning", "Info"):
        assert f">{label}</option>" in page


def test_edit_with_a_blank_key_keeps_the_key_and_its_age(admin_client, destination):
    stamped = timezone.now() - timedelta(days=10)
    Destination.objects.filter(pk=destination.pk).update(routing_key_rotated_at=stamped)
    url = reverse("admin:destinations_destination_change", args=[destination.pk])

    page = admin_client.get(url).content.decode()
    assert ROUTING_KEY not in page
    assert "••••" + ROUTING_KEY[-4:] in page

    response = admin_client.post(url, destination_form_data(routing_key="", component="api"))
    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.routing_key == ROUTING_KEY
    assert destination.component == "api"
    assert destination.routing_key_rotated_at == stamped


def test_edit_with_a_new_key_replaces_it_and_stamps_the_rotation(admin_client, destination):
    stamped = timezone.now() - timedelta(days=10)
    Destination.objects.filter(pk=destination.pk).update(routing_key_rotated_at=stamped)
    url = reverse("admin:destinations_destination_change", args=[destination.pk])

    response = admin_client.post(url, destination_form_data(routing_key=OTHER_ROUTING_KEY))
    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.routing_key == OTHER_ROUTING_KEY
    assert destination.routing_key_rotated_at > stamped


def test_list_flags_keys_older_than_90_days_and_filters_them(admin_client, destination):
    fresh = Destination(name="Fresh")
    fresh.set_routing_key(OTHER_ROUTING_KEY)
    fresh.save()
    Destination.objects.filter(pk=destination.pk).update(
        routing_key_rotated_at=timezone.now() - timedelta(days=120)
    )
    listing = admin_client.get(LIST_URL).content.decode()
    assert "⚠ 120 days — rotate" in listing

    stale_only = admin_client.get(LIST_URL, {"key_age": "stale"}).content.decode()
    assert "SecOps on-call" in stale_only
    assert ">Fresh<" not in stale_only


def test_list_columns_are_words_with_values_short_enough_to_fit(admin_client, destination):
    make_destination("Platform on-call", OTHER_ROUTING_KEY, region="eu", severity_override="error")
    page = page_text(admin_client.get(LIST_URL))

    table = page[page.index('id="result_list"') :]
    thead = table[: table.index("</thead>")]
    headers = re.findall(r'<div class="text">(?:<a [^>]*>|<span>)([^<]*)</', thead)
    assert headers == [
        "Name",
        "Enabled",
        "Region",
        "Integration key",
        "Severity",
        "Routing",
        "Last delivery",
        "Key age",
        "Falls back to",
    ]
    # The region's host is in the cell's title, and "(from detection severity)" in the filter:
    # the list keeps the words that tell the rows apart, so "Key age" fits at 1366 px.
    rows = re.findall(
        r'<td class="field-region_display">(.*?)</td><td class="field-masked_key">'
        r'.*?<td class="field-severity_display">(.*?)</td>',
        table,
    )
    assert rows == [
        ('<span title="EU (events.eu.pagerduty.com)">EU</span>', "Error"),
        ('<span title="US (events.pagerduty.com)">US</span>', "Automatic"),
    ]


def test_search_finds_by_name(admin_client, destination):
    other = Destination(name="Platform on-call")
    other.set_routing_key(OTHER_ROUTING_KEY)
    other.save()
    page = admin_client.get(LIST_URL, {"q": "SecOps"}).content.decode()
    assert "1 result" in page
    assert "Platform on-call" not in page


# The event preview, help that quotes PagerDuty, and the list's empty state.


def shown_preview(page: str) -> dict:
    """The event JSON as the change page shows it."""
    match = re.search(r'<pre class="event-preview" id="event-preview">(.*?)</pre>', page, re.S)
    assert match, "no event preview on the page"
    return json.loads(match.group(1))


def test_change_page_previews_the_event_a_sample_run_would_send(
    admin_client, configured_destination
):
    page = page_text(admin_client.get(change_url(configured_destination)))

    event = shown_preview(page)
    assert event["routing_key"] == MASKED_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == dedup_key_for(SAMPLE_DETECTION_NAME)
    payload = event["payload"]
    assert payload["summary"] == f"[HIGH] {SAMPLE_DETECTION_NAME} - {SAMPLE_REPLAY_LINK}"
    assert payload["severity"] == "critical"  # the override, not HIGH's "error"
    assert payload["source"] == SAMPLE_REPLAY_LINK
    assert (payload["component"], payload["group"], payload["class"]) == (
        "auth",
        "prod",
        "security",
    )
    details = payload["custom_details"]
    assert details["team"] == "secops"  # the destination's own details, merged in
    assert details["runbook"] == "https://wiki.example.com/runbooks/logins"
    assert details["detection_name"] == SAMPLE_DETECTION_NAME
    assert (details["outcome"], details["match_count"], details["match_threshold"]) == (
        "MATCHED",
        42,
        10,
    )
    assert event["links"] == [{"href": SAMPLE_REPLAY_LINK, "text": "Replay the detection run"}]

    size = preview_event(configured_destination).size
    assert f"{size:,} bytes as sent, of PagerDuty's 512,000-byte limit" in page
    assert "Event preview" in page
    assert "made-up HIGH run of “Suspicious Login Attempts” with 42 matches" in page
    assert ROUTING_KEY not in page


def test_preview_with_automatic_severity_and_no_extras_leaves_them_out(admin_client):
    destination = make_destination("Platform on-call", ROUTING_KEY)

    payload = shown_preview(page_text(admin_client.get(change_url(destination))))["payload"]

    assert payload["severity"] == "error"  # HIGH, automatically
    assert not {"component", "group", "class"} & payload.keys()
    assert "team" not in payload["custom_details"]


def test_add_page_quotes_the_pagerduty_steps_and_hides_what_needs_a_saved_destination(
    admin_client,
):
    page = page_text(admin_client.get(reverse("admin:destinations_destination_add")))

    assert (
        "Services → Service Directory → your service → Integrations tab → Add an integration → "
        "“Events API V2” → Add" in page
    )
    assert "Not an API Access Key" in page
    assert "Automatic follows the detection: CRITICAL → critical, HIGH → error" in page
    assert "PagerDuty's component: the part of the system affected" in page
    assert "Event preview" not in page
    assert "Key stored at" not in page
    # A test alert needs no saved destination: it sends what the form holds.
    assert 'id="send-test-alert"' in page


def test_change_page_keeps_the_test_alert_button_and_the_key_dates(
    admin_client, configured_destination
):
    page = page_text(admin_client.get(change_url(configured_destination)))

    assert 'id="send-test-alert"' in page
    assert "Key stored at" in page
    assert f"Current key: {MASKED_KEY}. Leave blank to keep it" in page


def test_empty_destination_list_links_to_the_add_page(admin_client):
    page = page_text(admin_client.get(reverse("admin:destinations_destination_changelist")))

    assert (
        f'<a href="{reverse("admin:destinations_destination_add")}">Add a destination</a>' in page
    )


def test_a_list_with_rows_shows_no_empty_state(admin_client, configured_destination):
    page = page_text(admin_client.get(reverse("admin:destinations_destination_changelist")))

    assert "No destinations yet." not in page
    assert "SecOps on-call" in page


# "Send test alert" on the add and change pages: what the form holds is sent, nothing is saved.


def add_test_url() -> str:
    return reverse("admin:destinations_destination_add_test_alert")


def button_url_of(destination) -> str:
    return reverse("admin:destinations_destination_test_alert", args=[destination.pk])


def rendered_form(admin_client, url: str) -> tuple[dict, str]:
    """The destination form's fields as the page renders them, and where its test button posts."""
    page = admin_client.get(url).content.decode()
    [action] = re.findall(r'<button[^>]*id="send-test-alert"[^>]*formaction="([^"]+)"', page)
    return rendered_form_data(page, form_id="destination_form"), action


def press_test(admin_client, url: str, data: dict):
    """Post the form as the page's script does, asking for the answer as JSON."""
    return admin_client.post(url, data, headers={"Accept": "application/json"})


def test_change_page_tests_an_unsaved_edit_and_saves_nothing(
    admin_client, destination, fake_pagerduty
):
    before = Destination.objects.values().get(pk=destination.pk)
    data, action = rendered_form(admin_client, change_url(destination))
    assert action == button_url_of(destination)
    assert data["routing_key"] == [""]  # the stored key is never rendered
    data["component"] = ["payments"]
    del data["resolve"]  # "resolve right after" unticked

    response = press_test(admin_client, action, data)

    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY  # a blank key field means the stored key
    assert event["payload"]["component"] == "payments"
    assert event["payload"]["group"] == "prod"
    assert "tested_key" not in event["payload"]["custom_details"]
    answer = response.json()
    assert response.status_code == 200
    assert answer["level"] == "success"
    assert answer["errors"] == {}
    assert answer["message"] == (
        "Test alert to “SecOps on-call” accepted by PagerDuty (202): “Event processed”, "
        f"dedup_key {event['dedup_key']}. An incident is now open in PagerDuty: resolve it there, "
        "or tick “resolve right after” to leave none open next time. "
        "Sent with the values on this form as they are; nothing was saved."
    )
    assert Destination.objects.values().get(pk=destination.pk) == before
    # Logged under the destination with the event as sent: the edited component, no key.
    delivery = Delivery.objects.get()
    assert (delivery.destination_id, delivery.kind) == (destination.pk, "test")
    assert delivery.event["payload"]["component"] == "payments"
    assert "routing_key" not in delivery.event


def test_change_page_tests_a_typed_key_without_storing_it(
    admin_client, destination, fake_pagerduty
):
    before = Destination.objects.values().get(pk=destination.pk)
    data, action = rendered_form(admin_client, change_url(destination))
    data["routing_key"] = [OTHER_ROUTING_KEY]

    response = press_test(admin_client, action, data)

    trigger, resolve = fake_pagerduty.events
    assert trigger["routing_key"] == resolve["routing_key"] == OTHER_ROUTING_KEY
    assert trigger["payload"]["custom_details"]["tested_key"] == "••••" + OTHER_ROUTING_KEY[-4:]
    assert "It was resolved right after, so no incident stays open." in response.json()["message"]
    assert OTHER_ROUTING_KEY not in response.content.decode()
    assert Destination.objects.values().get(pk=destination.pk) == before
    assert Destination.objects.get().routing_key == ROUTING_KEY


def test_add_page_tests_the_typed_key_before_anything_is_saved(admin_client, fake_pagerduty):
    data, action = rendered_form(admin_client, ADD_URL)
    assert action == add_test_url()
    data.update(name=["Payments on-call"], routing_key=[ROUTING_KEY], component=["payments"])

    response = press_test(admin_client, action, data)

    trigger, resolve = fake_pagerduty.events
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["summary"] == "Test alert from Payments on-call"
    assert trigger["payload"]["component"] == "payments"
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    answer = response.json()
    assert answer["level"] == "success"
    assert answer["message"].endswith(
        "It was resolved right after, so no incident stays open. "
        "Not logged: the destination is not saved yet."
    )
    assert ROUTING_KEY not in response.content.decode()
    assert not Destination.objects.exists()
    assert not Delivery.objects.exists()


def test_add_page_test_of_a_refused_key_shows_pagerdutys_answer(admin_client, fake_pagerduty):
    fake_pagerduty.refuse_key(ROUTING_KEY, status=404)
    data, action = rendered_form(admin_client, ADD_URL)
    data.update(name=["Payments on-call"], routing_key=[ROUTING_KEY])

    answer = press_test(admin_client, action, data).json()

    assert answer["level"] == "error"
    assert "Test alert to “Payments on-call” failed: PagerDuty answered 404" in answer["message"]
    assert "Hint: PagerDuty has no integration with this key" in answer["message"]
    assert answer["message"].endswith("Not logged: the destination is not saved yet.")
    assert len(fake_pagerduty.received) == 1
    assert not Destination.objects.exists()


def test_add_page_test_without_a_key_marks_the_field_and_sends_nothing(
    admin_client, fake_pagerduty
):
    data, action = rendered_form(admin_client, ADD_URL)
    data["name"] = ["Payments on-call"]

    response = press_test(admin_client, action, data)

    assert response.status_code == 400
    assert response.json() == {
        "level": "error",
        "message": "Test alert not sent: correct the form first. "
        "Integration key: Enter the integration key. Nothing was saved.",
        "errors": {"routing_key": ["Enter the integration key."]},
    }
    assert fake_pagerduty.received == []
    assert not Destination.objects.exists()


def test_change_page_test_with_broken_details_names_the_error_and_sends_nothing(
    admin_client, destination, fake_pagerduty
):
    before = Destination.objects.values().get(pk=destination.pk)
    data, action = rendered_form(admin_client, change_url(destination))
    data["custom_details"] = ['["not", "an object"]']

    response = press_test(admin_client, action, data)

    assert response.status_code == 400
    [error] = response.json()["errors"]["custom_details"]
    assert error.startswith("Custom details must be a JSON object")
    assert "Custom details: Custom details must be a JSON object" in response.json()["message"]
    assert fake_pagerduty.received == []
    assert not Delivery.objects.exists()
    assert Destination.objects.values().get(pk=destination.pk) == before


def test_without_the_script_the_button_posts_the_form_and_shows_a_message(
    admin_client, destination, fake_pagerduty
):
    data, action = rendered_form(admin_client, change_url(destination))
    data["component"] = ["payments"]

    response = admin_client.post(action, data, follow=True)

    assert response.redirect_chain == [(change_url(destination), 302)]
    [message] = shown_messages(response)
    assert "accepted by PagerDuty (202)" in message
    assert "nothing was saved" in message
    assert fake_pagerduty.events[0]["payload"]["component"] == "payments"
    assert Destination.objects.get().component == "auth"


def test_the_test_button_loads_its_script_and_sits_after_the_save_buttons(admin_client):
    page = admin_client.get(ADD_URL).content.decode()

    assert '<script src="/static/destinations/test_alert.js"' in page
    # A form's first submit button is what Enter presses: it must stay Save.
    assert page.index('name="_save"') < page.index('id="send-test-alert"')


def test_testing_on_the_add_page_needs_the_add_permission(db, client, fake_pagerduty):
    # The change page's test needs the change permission (tests/destinations/test_services.py).
    editor = User.objects.create_user("editor", password="pw", is_staff=True)
    editor.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_destination", "change_destination"])
    )
    client.force_login(editor)
    data = {"name": "Payments on-call", "routing_key": ROUTING_KEY, "timeout_seconds": "30"}

    response = client.post(add_test_url(), data, headers={"Accept": "application/json"})

    assert response.status_code == 403
    assert fake_pagerduty.received == []
