"""The admin in a real Chromium: set up a destination, test it, and follow a run to PagerDuty."""

import json
import re
import time

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from destinations.models import Delivery, DeliveryStatus, Destination
from tests.support.routing_keys import MASKED_KEY, ROUTING_KEY
from tests.system.browser.conftest import ADMIN_PASSWORD, ADMIN_USERNAME

pytestmark = pytest.mark.browser

# The example key of PagerDuty set-up guides: one character too many.
EXAMPLE_KEY_33 = "R0123456789ABCDEF0123456789ABCDEF"
BROKEN_DETAILS = '{"team": "secops",\n  "runbook"}'
DETAILS = '{"team": "secops", "runbook": "https://wiki.example.com/runbooks/logins"}'


def _json_error(text: str) -> str:
    """The position a JSON parser reports for text, as the form words it."""
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        return f"{error.msg} at line {error.lineno}, column {error.colno}."
    raise AssertionError("the text is valid JSON")


def field_row(page, field: str):
    """The admin form row of one field: its label, input, help and errors."""
    return page.locator(f".form-row.field-{field}")


def reload_until(page, locator, *, timeout: float = 15.0) -> None:
    """Reload the page, as someone waiting would, until the locator is on it."""
    deadline = time.monotonic() + timeout
    while locator.count() == 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"{locator} did not appear within {timeout} seconds")
        time.sleep(0.2)
        page.reload()


def test_add_a_destination_see_each_error_by_its_field_fix_it_and_see_the_key_masked(
    browser_page, admin_account, screenshot
):
    page = browser_page
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/\?next=/admin/$"))
    screenshot("01-login")
    page.get_by_label("Username").fill(ADMIN_USERNAME)
    page.get_by_label("Password").fill(ADMIN_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(re.compile(r"/admin/$"))

    page.locator("tr.model-destination").get_by_role("link", name="Add").click()
    expect(page).to_have_url(re.compile(r"/admin/destinations/destination/add/$"))
    page.get_by_label("Name").fill("SecOps on-call")
    page.get_by_label("Integration key").fill(EXAMPLE_KEY_33)
    page.get_by_label("Custom details").fill(BROKEN_DETAILS)
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".errornote")).to_be_visible()
    expect(field_row(page, "routing_key").locator(".errorlist")).to_have_text(
        "The integration key must be 32 characters; this one has 33."
    )
    expect(field_row(page, "custom_details").locator(".errorlist")).to_have_text(
        "Custom details are not valid JSON: " + _json_error(BROKEN_DETAILS)
    )
    # Only those two fields are marked; the name was fine.
    expect(page.locator(".errorlist")).to_have_count(2)
    expect(page.get_by_label("Integration key")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Custom details")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Name")).not_to_have_attribute("aria-invalid", "true")
    # The refused key is not echoed back; the JSON is kept so it can be fixed.
    expect(page.get_by_label("Integration key")).to_have_value("")
    expect(page.get_by_label("Custom details")).to_have_value(BROKEN_DETAILS)
    assert EXAMPLE_KEY_33 not in page.content()
    screenshot("02-add-form-errors")

    page.get_by_label("Integration key").fill(ROUTING_KEY)
    page.get_by_label("Custom details").fill(DETAILS)
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page).to_have_url(re.compile(r"/admin/destinations/destination/$"))
    expect(page.locator(".messagelist .success")).to_contain_text(
        "“SecOps on-call” was added successfully"
    )
    row = page.locator("#result_list tbody tr", has_text="SecOps on-call")
    expect(row.locator(".field-masked_key")).to_have_text(MASKED_KEY)
    assert ROUTING_KEY not in page.content()
    screenshot("03-destination-list")
    assert Destination.objects.get().custom_details == json.loads(DETAILS)


def test_send_a_test_alert_see_pagerdutys_answer_then_its_refusal_with_the_hint(
    admin_page, destination, fake_pagerduty, screenshot
):
    page = admin_page
    change_url = reverse("admin:destinations_destination_change", args=[destination.pk])
    page.goto(change_url)
    expect(page.get_by_label("resolve right after")).to_be_checked()
    preview = page.locator("#event-preview")
    expect(preview).to_contain_text(f'"routing_key": "{MASKED_KEY}"')
    expect(preview).to_contain_text('"summary": "[HIGH] Suspicious Login Attempts - https://')
    expect(page.locator(".event-preview-size")).to_contain_text("of PagerDuty's 512,000-byte limit")
    screenshot("04-destination-change-with-event-preview")

    page.get_by_role("button", name="Send test alert").click()

    expect(page).to_have_url(re.compile(re.escape(change_url) + "$"))
    accepted = page.locator(".messagelist .success")
    expect(accepted).to_contain_text(
        "Test alert to “SecOps on-call” accepted by PagerDuty (202): “Event processed”, "
        "dedup_key test-"
    )
    expect(accepted).to_contain_text("It was resolved right after")
    trigger, resolve = fake_pagerduty.events
    assert trigger["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["summary"] == "Test alert from SecOps on-call"
    assert resolve == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger["dedup_key"],
    }
    expect(accepted).to_contain_text(trigger["dedup_key"])
    screenshot("05-test-alert-accepted")

    fake_pagerduty.refuse_key(ROUTING_KEY, status=404)
    page.get_by_role("button", name="Send test alert").click()

    refused = page.locator(".messagelist .error")
    expect(refused).to_contain_text("Test alert to “SecOps on-call” failed: PagerDuty answered 404")
    expect(refused).to_contain_text("No integration found for this routing key")
    expect(refused).to_contain_text("Hint: PagerDuty has no integration with this key")
    expect(page.locator(".messagelist .success")).to_have_count(0)
    assert ROUTING_KEY not in page.content()
    screenshot("06-test-alert-refused")

    # Both tests are in the delivery log, each with PagerDuty's answer.
    page.goto(reverse("admin:destinations_delivery_changelist"))
    page.locator("#changelist-filter").get_by_role("link", name="Test", exact=True).click()
    tests = page.locator("#result_list tbody tr")
    expect(tests.locator(".field-status_display")).to_have_text(["failed", "delivered"])
    expect(tests.first.locator(".field-answer")).to_contain_text("PagerDuty answered 404")
    expect(tests.last.locator(".field-answer")).to_have_text("Event processed")


def test_run_now_is_delivered_and_the_log_shows_it_with_its_attempts(
    admin_page, delivery_worker, destination, fake_pagerduty, screenshot
):
    page = admin_page
    page.goto(reverse("admin:destinations_delivery_changelist"))
    expect(page.locator("#empty-delivery-list")).to_contain_text("No deliveries yet.")
    screenshot("07-empty-delivery-log")

    page.goto(reverse("admin:detections_detection_add"))
    page.get_by_label("Name").fill("Suspicious Login Attempts")
    page.get_by_label("Severity").select_option("HIGH")
    page.get_by_label("Match operator").select_option("GREATER_THAN")
    page.get_by_label("Match threshold").fill("10")
    # The two-list picker: pick the destination on the left, move it right with "Choose".
    page.locator("#id_destinations_from").select_option(label="SecOps on-call")
    page.locator("#id_destinations_add").click()
    expect(page.locator("#id_destinations_to option")).to_have_text(["SecOps on-call"])
    screenshot("08-detection-with-destination")
    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".messagelist .success")).to_contain_text(
        "“Suspicious Login Attempts” was added successfully"
    )
    row = page.locator("#result_list tbody tr", has_text="Suspicious Login Attempts")
    row.get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option(label="Run now (test run)")
    page.get_by_role("button", name="Run", exact=True).click()
    # The action asks first, naming whom it pages.
    expect(page.locator(".paged-destinations li")).to_contain_text(["SecOps on-call"])
    page.get_by_role("button", name="Yes, page them").click()

    expect(page.locator(".messagelist .success")).to_contain_text(
        "Test run of “Suspicious Login Attempts” recorded (MATCHED, run manual-"
    )
    expect(page.locator(".messagelist .success")).to_contain_text("1 delivery queued")

    page.goto(reverse("admin:destinations_delivery_changelist"))
    # The log has many columns: fold the navigation away, as a reader of the log would.
    page.locator("#toggle-nav-sidebar").click()
    delivered = page.locator("#result_list tbody tr", has=page.locator(".delivery-delivered"))
    reload_until(page, delivered)
    expect(delivered).to_have_count(1)
    expect(delivered.locator(".field-kind")).to_have_text("Trigger")
    expect(delivered.locator(".field-destination")).to_have_text("SecOps on-call")
    expect(delivered.locator(".field-detection")).to_have_text("Suspicious Login Attempts")
    expect(delivered.locator(".field-total_attempts")).to_have_text("1")
    expect(delivered.locator(".field-answer")).to_have_text("Event processed")
    screenshot("09-delivery-log")

    delivered.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(r"/admin/destinations/delivery/\d+/change/$"))
    attempts = page.locator(".inline-group")
    expect(attempts.locator("h2")).to_have_text("Delivery attempts")
    expect(attempts.locator("td.field-number")).to_have_text(["1"])
    expect(attempts.locator("td.field-status_code")).to_have_text(["202"])
    expect(attempts.locator("td.field-result")).to_have_text(["Delivered"])
    expect(attempts.locator("td.field-raw_answer")).to_contain_text(["Event processed"])
    assert ROUTING_KEY not in page.content()
    screenshot("10-delivery-attempts")

    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY
    assert event["payload"]["summary"] == "[HIGH] Suspicious Login Attempts"
    assert event["payload"]["custom_details"]["run_type"] == "MANUAL"
    assert Delivery.objects.get().status == DeliveryStatus.DELIVERED
