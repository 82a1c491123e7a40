"""An admin changes a destination's severity and key, then reads who did it on its History page."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.support.factories import make_destination
from tests.support.leak_guard import register_secret
from tests.support.routing_keys import ROUTING_KEY

pytestmark = pytest.mark.browser

SCREEN = {"width": 1366, "height": 768}
NEW_KEY = "Nw3Pq8Rt2Vx6Zb9Hk4Jm7Lc1Fg0sC5d6"


def test_the_history_page_names_who_changed_what_without_the_key(admin_page, screenshot):
    register_secret(NEW_KEY)
    destination = make_destination("SecOps on-call", ROUTING_KEY, severity_override="warning")
    page = admin_page
    page.set_viewport_size(SCREEN)

    page.goto(reverse("admin:destinations_destination_change", args=[destination.pk]))
    page.get_by_label("Severity override").select_option("critical")
    page.get_by_label("Integration key").fill(NEW_KEY)
    page.get_by_role("button", name="Save", exact=True).click()
    page.goto(reverse("admin:destinations_destination_change", args=[destination.pk]))
    page.get_by_role("link", name="History").click()

    latest = page.locator("#audit-trail tr.audit-entry").first
    expect(latest).to_contain_text("severity override: warning → critical")
    expect(latest).to_contain_text("key changed (••••C5d6)")
    expect(latest).to_contain_text("admin")
    expect(page.locator("#change-history")).to_contain_text("Changed Integration key")
    assert NEW_KEY not in page.content() and ROUTING_KEY not in page.content()
    screenshot("destination-history")

    page.goto(reverse("admin:destinations_historicaldestination_changelist"))
    expect(page.locator("#result_list")).to_contain_text("key changed (••••C5d6)")
    screenshot("destination-changes")
