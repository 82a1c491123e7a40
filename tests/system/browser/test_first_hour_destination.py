"""A newcomer's first destination in Chromium: it saves as offered, and tests what is typed."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from destinations.models import Delivery, Destination
from tests.support.routing_keys import MASKED_KEY, OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.browser

# The laptop screen the admin is tried on.
VIEWPORT = {"width": 1366, "height": 768}
ADD_PATH = "/admin/destinations/destination/add/"


@pytest.fixture
def laptop_page(admin_page):
    """The logged-in admin's tab at the laptop size."""
    admin_page.set_viewport_size(VIEWPORT)
    return admin_page


def field_row(page, field: str):
    """The admin form row of one field: its label, input, help and errors."""
    return page.locator(f".form-row.field-{field}")


def test_a_destination_saves_with_only_a_name_and_a_key(laptop_page, screenshot):
    page = laptop_page
    page.goto(ADD_PATH)
    # Every other field is left as the form offers it.
    expect(page.get_by_label("Custom details")).to_have_value("{}")
    page.get_by_label("Name").fill("SecOps on-call")
    page.get_by_label("Integration key").fill(ROUTING_KEY)
    screenshot("01-add-with-name-and-key")

    page.get_by_role("button", name="Save", exact=True).click()

    expect(page).to_have_url(re.compile(r"/admin/destinations/destination/$"))
    expect(page.locator(".messagelist .success")).to_contain_text(
        "“SecOps on-call” was added successfully"
    )
    row = page.locator("#result_list tbody tr", has_text="SecOps on-call")
    expect(row.locator(".field-masked_key")).to_have_text(MASKED_KEY)
    screenshot("02-saved-first-time")
    saved = Destination.objects.get()
    assert saved.custom_details == {}
    assert saved.routing_key == ROUTING_KEY


def test_a_key_is_tested_on_the_add_page_before_it_is_saved(
    laptop_page, fake_pagerduty, screenshot
):
    page = laptop_page
    page.goto(ADD_PATH)
    page.get_by_label("Name").fill("SecOps on-call")
    page.get_by_role("button", name="Send test alert").click()

    # Without a key nothing is sent, and the key's field says why, as a refused Save would.
    result = page.locator("#test-alert-result")
    expect(result.locator(".error")).to_contain_text(
        "Test alert not sent: correct the form first. Integration key: Enter the integration key."
    )
    expect(field_row(page, "routing_key").locator(".errorlist")).to_have_text(
        "Enter the integration key."
    )
    expect(page.get_by_label("Integration key")).to_have_attribute("aria-invalid", "true")
    screenshot("03-add-test-without-key")
    assert fake_pagerduty.received == []

    page.get_by_label("Integration key").fill(ROUTING_KEY)
    page.get_by_role("button", name="Send test alert").click()

    expect(result.locator(".success")).to_contain_text(
        "Test alert to “SecOps on-call” accepted by PagerDuty (202): “Event processed”"
    )
    expect(result.locator(".success")).to_contain_text(
        "It was resolved right after, so no incident stays open. "
        "Not logged: the destination is not saved yet."
    )
    expect(field_row(page, "routing_key").locator(".errorlist")).to_have_count(0)
    screenshot("04-add-test-accepted")
    trigger, resolve = fake_pagerduty.events
    assert trigger["routing_key"] == resolve["routing_key"] == ROUTING_KEY
    assert trigger["payload"]["summary"] == "Test alert from SecOps on-call"
    assert not Destination.objects.exists()
    assert not Delivery.objects.exists()
    # Everything typed is still there, the write-only key too, and nothing shows it.
    expect(page).to_have_url(re.compile(re.escape(ADD_PATH) + "$"))
    expect(page.get_by_label("Name")).to_have_value("SecOps on-call")
    expect(page.get_by_label("Integration key")).to_have_value(ROUTING_KEY)
    assert ROUTING_KEY not in page.content()

    page.get_by_role("button", name="Save", exact=True).click()

    expect(page.locator(".messagelist .success")).to_contain_text("was added successfully")
    assert Destination.objects.get().routing_key == ROUTING_KEY


def test_an_unsaved_edit_is_what_the_test_alert_sends(
    laptop_page, destination, fake_pagerduty, screenshot
):
    page = laptop_page
    change_url = reverse("admin:destinations_destination_change", args=[destination.pk])
    page.goto(change_url)
    page.get_by_label("Component").fill("payments")
    page.get_by_label("resolve right after").uncheck()
    screenshot("05-change-with-unsaved-edit")

    page.get_by_role("button", name="Send test alert").click()

    accepted = page.locator("#test-alert-result .success")
    expect(accepted).to_contain_text("accepted by PagerDuty (202)")
    expect(accepted).to_contain_text(
        "An incident is now open in PagerDuty: resolve it there, or tick “resolve right after” "
        "to leave none open next time."
    )
    expect(accepted).to_contain_text("Sent with the values on this form as they are")
    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY  # the key field was left blank: the stored key
    assert event["payload"]["component"] == "payments"
    expect(accepted).to_contain_text(event["dedup_key"])
    # The page still holds the edit, unsaved.
    expect(page).to_have_url(re.compile(re.escape(change_url) + "$"))
    expect(page.get_by_label("Component")).to_have_value("payments")
    screenshot("06-change-test-sent-edit-kept")
    assert Destination.objects.get().component == "auth"
    assert Delivery.objects.get().event["payload"]["component"] == "payments"

    # A new key typed on the change page is tested as typed and not stored.
    page.get_by_label("Integration key").fill(OTHER_ROUTING_KEY)
    page.get_by_label("resolve right after").check()
    page.get_by_role("button", name="Send test alert").click()

    expect(accepted).to_contain_text("It was resolved right after")
    assert fake_pagerduty.events[1]["routing_key"] == OTHER_ROUTING_KEY
    assert OTHER_ROUTING_KEY not in page.content()
    assert Destination.objects.get().routing_key == ROUTING_KEY
    screenshot("07-change-test-of-a-typed-key")
