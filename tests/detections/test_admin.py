"""The detections admin: the form's help, the pages, "Run now" through its confirmation, runs."""

import re

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from destinations.models import Delivery
from destinations.pagerduty.events import dedup_key_for
from detections.models import DetectionRun
from tests.support.admin_pages import page_text, shown_messages
from tests.support.factories import (
    drain,
    make_destination,
    make_detection,
    record_run,
    stored_counts,
)
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db


def test_detection_form_explains_severity_threshold_and_destinations(admin_client):
    page = page_text(admin_client.get(reverse("admin:detections_detection_add")))

    assert "unless a destination overrides it: CRITICAL → critical, HIGH → error" in page
    assert "A run matches when its count compares to the threshold like this" in page
    assert "Every enabled destination chosen here gets an event" in page
    assert "renaming starts a new incident" in page


def test_detection_add_page_shows_no_id_or_runs_until_saved(admin_client):
    page = page_text(admin_client.get(reverse("admin:detections_detection_add")))

    assert "Detection ID" not in page
    assert "Recent runs" not in page


def test_detection_change_page_shows_its_id_and_recent_runs(admin_client):
    detection = make_detection("Suspicious Login Attempts")

    page = page_text(
        admin_client.get(reverse("admin:detections_detection_change", args=[detection.pk]))
    )

    assert str(detection.pk) in page
    assert "No runs yet." in page


# "Run now": a confirmation that says whom it pages, then the normal path.

DETECTIONS_URL = reverse("admin:detections_detection_changelist")
RUNS_URL = reverse("admin:detections_detectionrun_changelist")
MERGE_NOTE = "merges into that open incident"


def read(html: str) -> str:
    """The page's text without its tags, spaces collapsed, as a reader takes it in."""
    text = " ".join(re.sub(r"<[^>]+>", " ", html).split())
    return re.sub(r" (?=[:;,.)])|(?<=[(“]) ", "", text)


def run_now_url(detection) -> str:
    return reverse("admin:detections_detection_run_now", args=[detection.pk])


def choose_run_now(client, *detections, **extra):
    """Post the list's "Run now (test run)" action for the detections, as the list's form does."""
    return client.post(
        DETECTIONS_URL,
        {"action": "run_now", "_selected_action": [d.pk for d in detections], **extra},
    )


@pytest.fixture
def eu_detection(destination):
    """A detection paging the suite's US destination and an EU one, with a disabled third."""
    eu = make_destination("EU on-call", OTHER_ROUTING_KEY, region="eu")
    retired = make_destination("Retired rota", "A" * 32, enabled=False)
    return make_detection("Impossible Travel", destination, eu, retired)


def test_run_now_action_asks_first_naming_each_destination_and_its_region(
    admin_client, eu_detection, settings
):
    settings.PAGERDUTY_EVENTS_URL = None

    response = choose_run_now(admin_client, eu_detection, index="0")

    html = page_text(response)
    page = read(html)
    assert "Run now (test run)?" in page
    assert "“Impossible Travel”: pages 2 destinations" in page
    assert "SecOps on-call: PagerDuty US service region (events.pagerduty.com)" in page
    assert "EU on-call: PagerDuty EU service region (events.eu.pagerduty.com)" in page
    assert "Retired rota: not paged (disabled)" in page
    assert MERGE_NOTE in page
    assert dedup_key_for("Impossible Travel") in page
    assert "Only a destination set to resolve automatically resolves it" in page
    assert 'value="Yes, page them"' in html
    assert "instead (PAGERDUTY_EVENTS_URL)" not in page
    # Asking records nothing and pages nobody.
    assert stored_counts() == (0, 0)
    assert ROUTING_KEY not in html and OTHER_ROUTING_KEY not in html


def test_run_now_confirmation_says_where_an_events_url_override_sends_instead(
    admin_client, eu_detection, settings
):
    settings.PAGERDUTY_EVENTS_URL = "http://127.0.0.1:9/v2/enqueue"

    page = read(page_text(choose_run_now(admin_client, eu_detection)))

    assert (
        "EU on-call: PagerDuty EU service region (events.eu.pagerduty.com); this server sends "
        "its events to http://127.0.0.1:9/v2/enqueue instead (PAGERDUTY_EVENTS_URL)"
    ) in page


def test_run_now_action_confirmed_records_a_manual_run_and_pages_through_the_worker(
    admin_client, eu_detection, fake_pagerduty
):
    response = choose_run_now(admin_client, eu_detection, confirm="Yes, page them")

    assert response.status_code == 302
    run = DetectionRun.objects.get()
    assert shown_messages(admin_client.get(response.url)) == [
        f"Test run of “Impossible Travel” recorded (MATCHED, run {run.run_id}); "
        "2 deliveries queued. Follow them under Deliveries."
    ]
    assert (run.run_type, run.outcome, run.detection) == ("MANUAL", "MATCHED", eu_detection)
    drain()
    assert sorted(event["routing_key"] for event in fake_pagerduty.events) == sorted(
        [ROUTING_KEY, OTHER_ROUTING_KEY]
    )
    for event in fake_pagerduty.events:
        assert event["event_action"] == "trigger"
        assert event["dedup_key"] == dedup_key_for("Impossible Travel")


def test_run_now_button_on_the_detection_page_leads_to_the_same_confirmation(
    admin_client, eu_detection, fake_pagerduty
):
    change = reverse("admin:detections_detection_change", args=[eu_detection.pk])
    change_page = page_text(admin_client.get(change))
    assert f'href="{run_now_url(eu_detection)}"' in change_page
    assert ">Run now (test run)</a>" in change_page

    html = page_text(admin_client.get(run_now_url(eu_detection)))
    page = read(html)

    assert "SecOps on-call: PagerDuty US service region (events.pagerduty.com)" in page
    assert "EU on-call: PagerDuty EU service region (events.eu.pagerduty.com)" in page
    assert MERGE_NOTE in page
    assert f'href="{change}"' in html  # "No, take me back"
    assert stored_counts() == (0, 0)
    # A POST without the confirmation button asks again.
    page_text(admin_client.post(run_now_url(eu_detection)))
    assert stored_counts() == (0, 0)

    response = admin_client.post(run_now_url(eu_detection), {"confirm": "Yes, page them"})

    assert response.status_code == 302 and response.url == change
    [message] = shown_messages(admin_client.get(change))
    assert message.startswith("Test run of “Impossible Travel” recorded (MATCHED, run manual-")
    assert stored_counts() == (1, 2)
    drain()
    assert len(fake_pagerduty.events) == 2


def test_run_now_confirmation_says_when_nothing_would_be_paged(admin_client, destination):
    disabled = make_detection("Dormant", destination, enabled=False)
    unrouted = make_detection("Unrouted", make_destination("Off", "B" * 32, enabled=False))

    html = page_text(choose_run_now(admin_client, disabled, unrouted))
    page = read(html)

    assert "“Dormant”: pages nobody" in page
    assert "Nothing would be paged: the detection is disabled." in page
    assert "Nothing would be paged: none of its destinations takes it (see below)." in page
    assert "Off: not paged (disabled)" in page
    assert 'value="Yes, record the run"' in html
    assert MERGE_NOTE not in page
    assert stored_counts() == (0, 0)


def test_run_now_of_a_detection_that_cannot_match_says_why_and_asks_nothing(
    admin_client, destination
):
    never = make_detection("Never", destination, match_operator="LESS_THAN", match_threshold=0)
    why = "“Never” cannot match: no count of 0 or more is less than (<) 0."

    from_list = choose_run_now(admin_client, never)
    assert from_list.status_code == 302
    assert shown_messages(admin_client.get(from_list.url)) == [why]

    from_page = admin_client.get(run_now_url(never))
    assert from_page.status_code == 302
    assert shown_messages(admin_client.get(from_page.url)) == [why]
    assert stored_counts() == (0, 0)


def test_run_now_needs_the_change_permission_and_a_csrf_token(client, eu_detection):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_detection"))
    client.force_login(viewer)
    change = reverse("admin:detections_detection_change", args=[eu_detection.pk])

    assert run_now_url(eu_detection) not in page_text(client.get(change))
    assert client.get(run_now_url(eu_detection)).status_code == 403
    assert client.post(run_now_url(eu_detection), {"confirm": "y"}).status_code == 403

    guarded = Client(enforce_csrf_checks=True)
    guarded.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    assert guarded.get(run_now_url(eu_detection)).status_code == 200
    assert guarded.post(run_now_url(eu_detection), {"confirm": "y"}).status_code == 403
    assert stored_counts() == (0, 0)


# The run log: a run's page lists its deliveries; nothing offers Delete.


def test_a_runs_page_lists_its_deliveries_with_pagerdutys_answer(admin_client, detection):
    run, [first, second] = record_run(detection, "run-1")
    Delivery.objects.filter(pk=first.pk).update(
        status="delivered",
        total_attempts=1,
        last_status_code=202,
        pagerduty_message="Event processed",
    )
    Delivery.objects.filter(pk=second.pk).update(
        status="failed",
        total_attempts=3,
        last_status_code=400,
        last_error="PagerDuty answered 400: Invalid routing key",
    )

    response = admin_client.get(reverse("admin:detections_detectionrun_change", args=[run.pk]))

    page = page_text(response)
    table = page.split('class="run-deliveries"')[1].split("</table>")[0]
    rows = [read(row) for row in re.findall(r"<tr>(.*?)</tr>", table, re.S)]
    assert rows[1:] == [
        f"#{first.pk} SecOps on-call Trigger delivered 1 202 Event processed",
        f"#{second.pk} Platform on-call Trigger failed 3 400 PagerDuty answered 400: Invalid "
        "routing key",
    ]
    for delivery in (first, second):
        assert reverse("admin:destinations_delivery_change", args=[delivery.pk]) in page
    assert ROUTING_KEY not in page and OTHER_ROUTING_KEY not in page


def test_a_run_without_deliveries_says_why(admin_client, detection):
    run, _ = record_run(detection, "quiet", match_count=0)

    page = page_text(
        admin_client.get(reverse("admin:detections_detectionrun_change", args=[run.pk]))
    )

    assert "No deliveries: a run that did not match pages nobody." in page


def test_runs_offer_no_delete_but_go_with_their_detection(admin_client, detection):
    run, _ = record_run(detection, "run-1")
    run_page = page_text(
        admin_client.get(reverse("admin:detections_detectionrun_change", args=[run.pk]))
    )
    delete_url = reverse("admin:detections_detectionrun_delete", args=[run.pk])

    assert delete_url not in run_page
    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    actions = page_text(admin_client.get(RUNS_URL))
    assert 'value="delete_selected"' not in actions
    admin_client.post(
        RUNS_URL, {"action": "delete_selected", "_selected_action": [run.pk], "post": "yes"}
    )
    assert DetectionRun.objects.filter(pk=run.pk).exists()

    # Deleting the detection still takes its runs with it; the deliveries stay in their log.
    detection_delete = reverse("admin:detections_detection_delete", args=[detection.pk])
    assert "Are you sure" in page_text(admin_client.get(detection_delete))
    admin_client.post(detection_delete, {"post": "yes"})
    assert not DetectionRun.objects.exists()
    assert Delivery.objects.count() == 2


def test_detection_page_labels_its_id_in_words(admin_client):
    detection = make_detection("Suspicious Login Attempts")

    page = page_text(
        admin_client.get(reverse("admin:detections_detection_change", args=[detection.pk]))
    )

    assert "Detection ID:" in page
    assert "Detection_id" not in page


def test_run_page_labels_its_ids_in_words(admin_client, detection):
    run, _ = record_run(detection, "run-1", search_id="s-1", trace_id="t-1")

    page = read(
        page_text(admin_client.get(reverse("admin:detections_detectionrun_change", args=[run.pk])))
    )

    for label in ("Run ID:", "Search ID:", "Trace ID:"):
        assert label in page
    for raw in ("Run id:", "Search id:", "Trace id:"):
        assert raw not in page


def test_detection_page_lists_who_a_run_would_page_and_why(admin_client):
    attached = make_destination("SecOps queue", "A" * 32)
    both = make_destination("Platform on-call", "B" * 32, all_detections=True)
    make_destination("On-call engineering", "C" * 32, all_detections=True)
    make_destination("Executives", "D" * 32, all_detections=True, minimum_severity="CRITICAL")
    retired = make_destination("Retired rota", "E" * 32, enabled=False)
    make_destination("Unrelated", "F" * 32)  # neither attached nor taking all: not listed
    detection = make_detection("Suspicious Login Attempts", attached, both, retired)

    page = page_text(
        admin_client.get(reverse("admin:detections_detection_change", args=[detection.pk]))
    )

    assert (
        "On-call engineering: all detections"
        " Platform on-call: attached and all detections"
        " SecOps queue: attached"
        " Executives: all detections; skipped: below its minimum severity CRITICAL"
        " Retired rota: attached; skipped: disabled"
    ) in " ".join(re.sub(r"<[^>]+>", " ", page).split()).replace(" :", ":")
    assert "Unrelated:" not in page


def test_detection_page_says_when_nobody_would_be_paged(admin_client):
    detection = make_detection("Suspicious Login Attempts")

    page = page_text(
        admin_client.get(reverse("admin:detections_detection_change", args=[detection.pk]))
    )

    assert "Nobody: no destination is attached and none receives all detections." in page
