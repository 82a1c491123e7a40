"""A newcomer's failed test alert, re-queued and delivered, then read on the health page."""

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from destinations.admin.health_page import human_duration_ms
from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from tests.support.factories import DETECTION_NAME, make_detection, post_run, run_body
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import ROUTING_KEY
from tests.support.worker_process import wait_until

pytestmark = pytest.mark.browser

# The screen a newcomer's laptop gives the admin.
SCREEN = {"width": 1366, "height": 768}


def is_test(delivery: Delivery) -> bool:
    """A test alert, or the resolve sent after one (told by the test's own dedup key)."""
    return delivery.kind == DeliveryKind.TEST or delivery.dedup_key.startswith("test-")


def latency_ms(delivery: Delivery) -> float:
    return (delivery.delivered_at - delivery.created_at).total_seconds() * 1000


def test_a_retried_test_alert_and_its_resolve_are_shown_apart_from_the_pages(
    admin_page, client, token, destination, fake_pagerduty, delivery_worker, screenshot
):
    page = admin_page
    page.set_viewport_size(SCREEN)

    # A first test alert, asking to be resolved right after: PagerDuty is failing (500).
    fake_pagerduty.inject(Fault.status(500), times=1)
    page.goto(reverse("admin:destinations_destination_changelist"))
    page.locator("#result_list tbody tr", has_text="SecOps on-call").get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option(
        label="Send test alert and resolve it right after"
    )
    page.get_by_role("button", name="Run", exact=True).click()
    refused = page.locator(".messagelist .error")
    expect(refused).to_contain_text("Test alert to “SecOps on-call” failed: PagerDuty answered 500")
    expect(refused).to_contain_text("Hint: PagerDuty unreachable or failing")
    screenshot("health-01-test-alert-failed")
    [test] = Delivery.objects.all()
    assert (test.kind, test.status, test.resolve_after) == ("test", "failed", True)

    # Re-queue it from the delivery log; the worker sends it, then its resolve.
    page.goto(reverse("admin:destinations_delivery_changelist"))
    page.locator("#changelist-filter").get_by_role("link", name="Test", exact=True).click()
    page.locator("#result_list tbody tr").first.get_by_role("checkbox").check()
    page.locator("select[name=action]").select_option(label="Retry now")
    page.get_by_role("button", name="Run", exact=True).click()
    expect(page.locator(".messagelist .success")).to_contain_text(
        "1 failed delivery is due again now"
    )
    expect(page.locator(".messagelist .success")).to_contain_text("resolved after")
    screenshot("health-02-test-alert-requeued")
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 2,
        timeout=15,
        what="the re-queued test alert and its resolve to be delivered",
    )
    # And one real page: the detection engine reports a run that matched.
    make_detection(DETECTION_NAME, destination, severity="HIGH")
    assert post_run(client, run_body(), token).status_code == 201
    wait_until(
        lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 3,
        timeout=15,
        what="the detection's page to be delivered",
    )
    retried, resolve, trigger = fake_pagerduty.received[1:]
    assert (retried.json["event_action"], retried.json["dedup_key"]) == ("trigger", test.dedup_key)
    assert (resolve.json["event_action"], resolve.json["dedup_key"]) == ("resolve", test.dedup_key)
    assert trigger.json["payload"]["summary"] == f"[HIGH] {DETECTION_NAME}"

    # What the stored rows say, told apart as the page promises.
    rows = list(Delivery.objects.order_by("id"))
    assert [(row.kind, row.run_id is not None, row.status) for row in rows] == [
        ("test", False, "delivered"),
        ("resolve", False, "delivered"),
        ("trigger", True, "delivered"),
    ]
    pages = [row for row in rows if not is_test(row)]
    tests = [row for row in rows if is_test(row)]
    assert (len(pages), len(tests)) == (1, 2)
    [page_row] = pages
    # SQLite's julianday() is exact to about a millisecond; the page rounds to whole ones.
    shown = {human_duration_ms(latency_ms(page_row) + error) for error in (-1, 0, 1)}

    page.goto(reverse("admin:destinations_health"))
    expect(page.locator("h1")).to_have_text("Delivery health")
    expect(page.locator("#health-pending")).to_have_text(re.compile(r"^0 pages pending"))
    expect(page.locator("#health-failed-recently")).to_have_text(
        re.compile(r"^0 pages failed in the last 24 hours\s*$")
    )
    expect(page.locator("#health-delivered-recently")).to_have_text(
        re.compile(r"^1 page delivered in the last 24 hours\s+and 2 tests\s*$")
    )
    row = page.locator(f'tr.health-row[data-destination="{destination.pk}"]')
    expect(row.locator(".health-split")).to_have_text("3 in 14 days: 1 page, 2 tests")
    # The one page was delivered, and only its latency counts: not the tests' few milliseconds.
    expect(row.locator(".health-success")).to_have_text("100.0%")
    expect(row.locator(".health-success")).to_have_attribute("title", "1 page delivered, 0 failed")
    latency = row.locator(".health-latency").inner_text()
    p50, p95 = latency.split(" / ")
    assert p50 == p95 and p50 in shown, (latency, shown)
    # The test's failure is over: it was delivered on its retry.
    expect(row.locator(".health-failure")).to_have_text("—")
    expect(row.locator(".health-pending")).to_have_text("—")
    assert ROUTING_KEY not in page.content()
    screenshot("health-03-health-page")
