"""The detections admin: the form's help, and what the add and change pages show."""

import re

import pytest
from django.urls import reverse

from tests.support.admin_pages import page_text
from tests.support.factories import make_destination, make_detection

pytestmark = pytest.mark.django_db


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
