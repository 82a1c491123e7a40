"""The admin's finishing touches: the event preview, help that quotes PagerDuty, empty lists."""

import html
import json
import re

import pytest
from django.urls import reverse

from destinations.pagerduty.events import EVENT_MAX_BYTES, dedup_key_for, serialize_event
from destinations.services import SAMPLE_DETECTION_NAME, SAMPLE_REPLAY_LINK, preview_event
from tests.conftest import ROUTING_KEY
from tests.delivery_helpers import make_destination, make_detection, record_run

MASKED_KEY = "••••" + ROUTING_KEY[-4:]

pytestmark = pytest.mark.django_db


def change_url(destination) -> str:
    return reverse("admin:destinations_destination_change", args=[destination.pk])


def page_text(response) -> str:
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def shown_preview(page: str) -> dict:
    """The event JSON as the change page shows it."""
    match = re.search(r'<pre class="event-preview" id="event-preview">(.*?)</pre>', page, re.S)
    assert match, "no event preview on the page"
    return json.loads(match.group(1))


@pytest.fixture
def configured_destination():
    return make_destination(
        "SecOps on-call",
        ROUTING_KEY,
        severity_override="critical",
        component="auth",
        group="prod",
        event_class="security",
        custom_details={"team": "secops", "runbook": "https://wiki.example.com/runbooks/logins"},
    )


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


def test_preview_size_counts_the_real_key_length_but_shows_only_the_mask(configured_destination):
    preview = preview_event(configured_destination)

    event = {name: value for name, value in preview.event.items() if name != "routing_key"}
    assert preview.size == len(serialize_event(event, routing_key=ROUTING_KEY))
    assert preview.limit == EVENT_MAX_BYTES
    assert preview.event["routing_key"] == MASKED_KEY
    assert ROUTING_KEY not in preview.json
    assert next(iter(preview.event)) == "routing_key"  # as posted: the key first


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
    assert 'id="send-test-alert"' not in page


def test_change_page_keeps_the_test_alert_button_and_the_key_dates(
    admin_client, configured_destination
):
    page = page_text(admin_client.get(change_url(configured_destination)))

    assert 'id="send-test-alert"' in page
    assert "Key stored at" in page
    assert f"Current key: {MASKED_KEY}. Leave blank to keep it" in page


@pytest.mark.parametrize(
    ("url_name", "message", "plural"),
    [
        ("admin:destinations_destination_changelist", "No destinations yet.", "destinations"),
        ("admin:destinations_delivery_changelist", "No deliveries yet.", "deliveries"),
        ("admin:detections_detection_changelist", "No detections yet.", "detections"),
        ("admin:detections_detectionrun_changelist", "No runs yet.", "detection runs"),
        ("admin:detections_apitoken_changelist", "No API tokens yet.", "API tokens"),
    ],
)
def test_empty_lists_say_what_fills_them(admin_client, url_name, message, plural):
    url = reverse(url_name)

    assert message in page_text(admin_client.get(url))
    # A search that finds nothing is not an empty list, and says so.
    searched = page_text(admin_client.get(url, {"q": "nothing-like-this"}))
    assert message not in searched
    assert f"No {plural} match this search or these filters." in searched


def test_empty_destination_list_links_to_the_add_page(admin_client):
    page = page_text(admin_client.get(reverse("admin:destinations_destination_changelist")))

    assert (
        f'<a href="{reverse("admin:destinations_destination_add")}">Add a destination</a>' in page
    )


def test_a_list_with_rows_shows_no_empty_state(admin_client, configured_destination):
    page = page_text(admin_client.get(reverse("admin:destinations_destination_changelist")))

    assert "No destinations yet." not in page
    assert "SecOps on-call" in page


def test_detection_form_explains_severity_threshold_and_destinations(admin_client):
    page = page_text(admin_client.get(reverse("admin:detections_detection_add")))

    assert "unless a destination overrides it: CRITICAL → critical, HIGH → error" in page
    assert "A run matches when its count compares to the threshold like this" in page
    assert "Every enabled destination chosen here gets an event" in page
    assert "renaming starts a new incident" in page


def test_detection_add_page_shows_no_id_or_runs_until_saved(admin_client):
    page = page_text(admin_client.get(reverse("admin:detections_detection_add")))

    assert "Detection_id" not in page
    assert "Recent runs" not in page


def test_detection_change_page_shows_its_id_and_recent_runs(admin_client):
    detection = make_detection("Suspicious Login Attempts")

    page = page_text(
        admin_client.get(reverse("admin:detections_detection_change", args=[detection.pk]))
    )

    assert str(detection.pk) in page
    assert "No runs yet." in page


def test_filtered_delivery_log_with_no_match_says_so(admin_client, configured_destination):
    detection = make_detection("Suspicious Login Attempts", configured_destination)
    record_run(detection, "run-1")

    page = page_text(
        admin_client.get(reverse("admin:destinations_delivery_changelist"), {"status": "failed"})
    )

    assert "No deliveries match this search or these filters." in page
    assert "No deliveries yet." not in page


def test_delivery_page_gives_the_size_with_separators_and_dashes_for_blanks(
    admin_client, configured_destination
):
    detection = make_detection("Suspicious Login Attempts", configured_destination)
    _, [delivery] = record_run(detection, "run-1")

    page = page_text(
        admin_client.get(reverse("admin:destinations_delivery_change", args=[delivery.pk]))
    )

    assert "PagerDuty's limit is 512,000)." in page
    lease = re.search(r'field-lease_expires_at">.*?<div class="readonly">(.*?)</div>', page, re.S)
    assert lease.group(1) == "—"  # empty, shown as a dash rather than "-"
