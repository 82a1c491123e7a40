"""A newcomer's first test run in a real Chromium: Run now asks first, then PagerDuty is paged."""

import re
import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from destinations.models import Delivery, DeliveryStatus
from destinations.pagerduty.events import dedup_key_for
from detections.models import DetectionRun
from tests.support.routing_keys import ROUTING_KEY

pytestmark = pytest.mark.browser

# The laptop screen the first hour was lived on.
VIEWPORT = {"width": 1366, "height": 768}
NAME = "Suspicious Login Attempts"


def wait_for(check, *, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{check.__doc__ or check} did not happen within {timeout} s")
        time.sleep(0.1)


def test_run_now_from_the_detection_page_asks_whom_it_pages_then_pages_them(
    admin_page, destination, fake_pagerduty, delivery_worker, screenshot
):
    page = admin_page
    page.set_viewport_size(VIEWPORT)

    # Add a detection with only a name and its destination; everything else as the form has it.
    page.goto(reverse("admin:detections_detection_add"))
    page.get_by_label("Name").fill(NAME)
    page.locator("#id_destinations_from").select_option(label="SecOps on-call")
    page.locator("#id_destinations_add").click()
    screenshot("01-new-detection")
    page.get_by_role("button", name="Save and continue editing").click()
    expect(page.locator(".messagelist .success")).to_contain_text(f"“{NAME}” was added")
    change_url = page.url
    expect(page.locator(".form-row.field-id label")).to_have_text("Detection ID:")
    screenshot("02-detection-page")

    # Run now asks first; going back records nothing.
    page.get_by_role("link", name="Run now (test run)").click()
    expect(page).to_have_url(re.compile(r"/run-now/$"))
    expect(page.locator("h1")).to_have_text("Run now (test run)?")
    screenshot("03-run-now-confirmation")
    page.get_by_role("button", name="No, take me back").click()
    expect(page).to_have_url(change_url)
    assert not DetectionRun.objects.exists()

    page.get_by_role("link", name="Run now (test run)").click()
    plan = page.locator(".run-now-plan")
    expect(plan.locator("h2")).to_have_text(f"“{NAME}”: pages 1 destination")
    expect(plan.locator(".paged-destinations li")).to_have_text(
        [
            re.compile(
                r"^SecOps on-call: PagerDuty US service region \(events\.pagerduty\.com\); "
                rf"this server sends its events to {re.escape(fake_pagerduty.url)} instead"
            )
        ]
    )
    expect(plan.locator(".merge-note")).to_contain_text("merges into that open incident")
    expect(plan.locator(".merge-note")).to_contain_text(dedup_key_for(NAME))
    assert fake_pagerduty.events == []
    assert ROUTING_KEY not in page.content()

    page.get_by_role("button", name="Yes, page them").click()

    expect(page).to_have_url(change_url)
    expect(page.locator(".messagelist .success")).to_contain_text(
        f"Test run of “{NAME}” recorded (MATCHED, run manual-"
    )
    expect(page.locator(".messagelist .success")).to_contain_text("1 delivery queued")
    screenshot("04-test-run-recorded")

    def paged():
        """the fake PagerDuty received the trigger"""
        return len(fake_pagerduty.events) == 1

    wait_for(paged)
    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY
    assert event["event_action"] == "trigger"
    assert event["dedup_key"] == dedup_key_for(NAME)
    assert event["payload"]["summary"] == f"[HIGH] {NAME}"
    assert event["payload"]["custom_details"]["run_type"] == "MANUAL"

    # The run's own page lists its delivery, with PagerDuty's answer.
    wait_for(lambda: Delivery.objects.get().status == DeliveryStatus.DELIVERED)
    page.reload()
    run = DetectionRun.objects.get()
    page.locator(".field-recent_runs").get_by_role("link", name=run.run_id).click()
    expect(page).to_have_url(re.compile(r"/admin/detections/detectionrun/\d+/change/$"))
    row = page.locator("table.run-deliveries tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td")).to_have_text(
        [
            f"#{Delivery.objects.get().pk}",
            "SecOps on-call",
            "Trigger",
            "delivered",
            "1",
            "202 Event processed",
        ]
    )
    # A run is a record: its page offers no Delete.
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    screenshot("05-run-with-its-delivery")
    assert ROUTING_KEY not in page.content()
