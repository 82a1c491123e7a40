"""The delivery health page as an on-call admin reads it, and what it costs the database."""

import html
import random
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from destinations.admin.health_page import format_rate, human_duration_ms
from destinations.health import delivery_health
from destinations.models import Delivery, DeliveryKind, DeliveryStatus, Destination
from destinations.pagerduty.events import dedup_key_for
from destinations.retention.latency import Histogram
from destinations.services import TEST_DEDUP_PREFIX, send_test_alert
from tests.support.factories import (
    DETECTION_NAME,
    days_ago,
    make_destination,
    make_detection,
    record_run,
)
from tests.support.factories import stored_delivery as deliver
from tests.support.routing_keys import ROUTING_KEY

URL = reverse("admin:destinations_health")

pytestmark = pytest.mark.django_db


def bar_title(day: date, text: str) -> str:
    return f"<title>{day:%a} {day.day} {day:%b}: {text}</title>"


def page(client, **params) -> str:
    response = client.get(URL, params)
    assert response.status_code == 200
    return response.content.decode()


def row_of(page_html: str, destination: Destination) -> str:
    start = page_html.index(f'data-destination="{destination.pk}"')
    return page_html[start : page_html.index("</tr>", start)]


# --- Who may see it ---------------------------------------------------------------------------


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_users_who_are_not_staff_are_sent_to_log_in(client):
    client.force_login(User.objects.create_user("reader", password="pw"))
    response = client.get(URL)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_staff_need_the_permission_to_view_the_delivery_log(client, destination):
    staff = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(URL).status_code == 403
    assert "Delivery health" not in client.get(reverse("admin:index")).content.decode()

    staff.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    staff = User.objects.get(pk=staff.pk)  # a fresh permission cache
    client.force_login(staff)
    text = page(client)
    assert "SecOps on-call" in text
    # Without the destination permission the name is not a link to a page they cannot open.
    assert reverse("admin:destinations_destination_change", args=[destination.pk]) not in text


def test_the_admin_index_links_to_it(admin_client):
    index = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{URL}"' in index
    assert "Delivery health" in index


def test_it_sits_in_the_admin_with_breadcrumbs(admin_client):
    text = page(admin_client)
    assert "<h1>Delivery health</h1>" in text
    assert f'<li><a href="{reverse("admin:index")}">Home</a></li>' in text
    assert '<li aria-current="page">Delivery health</li>' in text
    assert reverse("admin:app_list", kwargs={"app_label": "destinations"}) in text


# --- What it shows ----------------------------------------------------------------------------


def test_deliveries_per_day_are_counted_in_each_bars_title(admin_client, destination):
    for status in ["delivered"] * 3 + ["failed", "pending"]:
        deliver(destination, status=status, created_at=days_ago(2))
    deliver(destination, status="delivered", created_at=days_ago(2), kind=DeliveryKind.TEST)
    deliver(destination, status="delivered", created_at=days_ago(5, time(0, 1)))
    deliver(destination, status="sending", created_at=days_ago(5, time(23, 59)))
    deliver(destination, status="delivered", created_at=days_ago(20))  # outside the window

    row = row_of(page(admin_client), destination)
    assert (
        bar_title(
            timezone.localdate() - timedelta(days=2),
            "4 delivered, 1 failed, 1 pending (of which 1 test)",
        )
        in row
    )
    assert (
        bar_title(timezone.localdate() - timedelta(days=5), "1 delivered, 0 failed, 1 pending")
        in row
    )
    assert (
        bar_title(timezone.localdate() - timedelta(days=3), "0 delivered, 0 failed, 0 pending")
        in row
    )
    assert row.count("<title>") == 14
    assert "8 in 14 days: 7 pages, 1 test" in row


def test_success_rate_counts_finished_detection_pages_only(admin_client, destination):
    for status in ["delivered"] * 3 + ["failed", "pending"]:
        deliver(destination, status=status, created_at=days_ago(1))
    # A refused test of a new key says nothing about the destination's pages.
    deliver(destination, status="failed", created_at=days_ago(1), kind=DeliveryKind.TEST)

    row = row_of(page(admin_client), destination)
    assert ">75.0%<" in row
    assert 'title="3 pages delivered, 1 failed"' in row
    assert "(test alert)" in row  # it is still the last failure, and marked as a test


def test_success_rate_never_rounds_up_to_a_perfect_score(destination):
    deliver(destination, status="failed", created_at=days_ago(1))
    Delivery.objects.bulk_create(
        Delivery(
            destination=destination,
            kind=DeliveryKind.TRIGGER,
            event={},
            dedup_key=f"k{n}",
            status=DeliveryStatus.DELIVERED,
            created_at=days_ago(1),
            delivered_at=days_ago(1) + timedelta(seconds=1),
        )
        for n in range(2000)
    )
    [health] = delivery_health().destinations
    assert health.success_rate == pytest.approx(99.95, abs=0.01)
    assert format_rate(health.success_rate) == "99.9%"


def test_latency_percentiles_are_nearest_rank_over_delivered_pages(admin_client, destination):
    # 100 ms, 200 ms, … 2,000 ms: the 10th of 20 is the median, the 19th the 95th percentile.
    for n in range(1, 21):
        deliver(
            destination, status="delivered", created_at=days_ago(n % 13 + 1), latency_ms=n * 100
        )
    # Neither a slow test alert nor a failure moves them.
    deliver(
        destination, status="delivered", created_at=days_ago(1), latency_ms=600_000, kind="test"
    )
    deliver(destination, status="failed", created_at=days_ago(1))

    [health] = delivery_health().destinations
    assert (health.p50_ms, health.p95_ms) == (1000, 1900)
    assert ">1.0 s / 1.9 s<" in row_of(page(admin_client), destination)


def test_a_destination_that_only_got_tests_shows_no_success_or_latency(
    admin_client, destination, fake_pagerduty
):
    # What an admin does on day one: two test alerts, each resolved right after (fast answers).
    for _ in range(2):
        assert send_test_alert(destination=destination, sent_by="admin", resolve=True).accepted
    rows = list(Delivery.objects.order_by("id"))
    assert [(row.kind, row.status, row.run_id) for row in rows] == [
        (DeliveryKind.TEST, DeliveryStatus.DELIVERED, None),
        (DeliveryKind.RESOLVE, DeliveryStatus.DELIVERED, None),
    ] * 2

    row = row_of(page(admin_client), destination)
    success = row[row.index('class="health-number health-success') :]
    assert success[: success.index("</td>")].endswith(">—")  # not 100.0%, from the resolves
    assert 'title="0 pages delivered, 0 failed"' in row
    assert 'health-latency">— / —</td>' in row  # not the resolves' few milliseconds
    assert "4 in 14 days: 0 pages, 4 tests" in row
    [health] = delivery_health().destinations
    assert (health.delivered, health.failed, health.tests) == (0, 0, 4)
    assert (health.p50_ms, health.p95_ms) == (None, None)


def test_test_resolves_do_not_outweigh_a_real_trigger(admin_client, destination):
    detection = make_detection(DETECTION_NAME, destination)
    run, [trigger] = record_run(detection, "run-1")
    created = days_ago(1)
    Delivery.objects.filter(pk=trigger.pk).update(
        status=DeliveryStatus.DELIVERED,
        created_at=created,
        delivered_at=created + timedelta(milliseconds=133),
        finished_at=created + timedelta(milliseconds=133),
    )
    for _ in range(2):  # two tests' resolves, 2 ms each, with no run as every test has
        deliver(
            destination,
            status="delivered",
            created_at=created,
            latency_ms=2,
            kind=DeliveryKind.RESOLVE,
            dedup_key=f"{TEST_DEDUP_PREFIX}{random.getrandbits(128):032x}",
        )
    stored = Delivery.objects.get(pk=trigger.pk)
    assert stored.dedup_key == dedup_key_for(DETECTION_NAME)
    page_ms = round((stored.delivered_at - stored.created_at).total_seconds() * 1000)

    row = row_of(page(admin_client), destination)
    assert page_ms == 133
    assert f'health-latency">{page_ms} ms / {page_ms} ms</td>' in row
    assert ">100.0%<" in row and 'title="1 page delivered, 0 failed"' in row
    assert "3 in 14 days: 1 page, 2 tests" in row

    # A page stays a page when its run is deleted (the delivery's run becomes NULL).
    run.delete()
    assert Delivery.objects.get(pk=trigger.pk).run_id is None
    [health] = delivery_health().destinations
    assert (health.p50_ms, health.p95_ms, health.delivered, health.tests) == (133, 133, 1, 2)


def test_last_failure_marks_a_failed_test_resolve_as_a_test(admin_client, destination):
    deliver(destination, status="failed", created_at=days_ago(2), last_status_code=400)
    resolve = deliver(
        destination,
        status="failed",
        created_at=days_ago(1),
        kind=DeliveryKind.RESOLVE,
        dedup_key=f"{TEST_DEDUP_PREFIX}{'a' * 32}",
        last_status_code=503,
    )
    row = row_of(page(admin_client), destination)
    cell = row[row.index('class="health-failure"') :]
    assert f'href="{reverse("admin:destinations_delivery_change", args=[resolve.pk])}"' in cell
    assert "HTTP 503" in cell and "(resolve of a test alert)" in cell
    # The failed resolve is a test: the one failed page is the whole success rate.
    assert ">0.0%<" in row and 'title="0 pages delivered, 1 failed"' in row


def test_latency_is_per_destination(destination):
    other = make_destination("Platform", "A" * 32)
    deliver(destination, status="delivered", created_at=days_ago(1), latency_ms=300)
    deliver(other, status="delivered", created_at=days_ago(1), latency_ms=90_000)
    by_name = {health.name: health for health in delivery_health().destinations}
    assert by_name["SecOps on-call"].p95_ms == pytest.approx(300, abs=1)
    assert by_name["Platform"].p50_ms == pytest.approx(90_000, abs=1)


def test_oldest_pending_delivery_shows_its_age_and_links_to_it(admin_client, destination):
    now = timezone.now()
    oldest = deliver(
        destination,
        status="pending",
        created_at=now - timedelta(hours=5),
        queued_at=now - timedelta(hours=3),
    )
    deliver(destination, status="sending", created_at=now - timedelta(hours=1))
    deliver(destination, status="delivered", created_at=now - timedelta(hours=9))

    row = row_of(page(admin_client), destination)
    cell = row[row.index('health-pending">') :]
    assert f'href="{reverse("admin:destinations_delivery_change", args=[oldest.pk])}"' in cell
    # Age counts from queueing, as /healthz does: "Retry now" re-queues.
    assert ">3.0 h</a>" in cell
    assert f"#{oldest.pk} pending, 2 unfinished" in cell


def test_last_failure_shows_pagerdutys_answer_and_links_to_it(admin_client, destination):
    deliver(destination, status="failed", created_at=days_ago(3), last_status_code=503)
    last = deliver(
        destination,
        status="failed",
        created_at=days_ago(1),
        last_status_code=400,
        pagerduty_message="Event object is invalid",
        pagerduty_errors=["'payload.summary' is missing or blank"],
        last_error="PagerDuty answered 400: Event object is invalid",
    )
    row = row_of(page(admin_client), destination)
    cell = html.unescape(row[row.index('class="health-failure"') :])
    assert f'href="{reverse("admin:destinations_delivery_change", args=[last.pk])}"' in cell
    assert "HTTP 400" in cell
    assert "<li>Event object is invalid</li>" in cell
    assert "<li>'payload.summary' is missing or blank</li>" in cell
    assert "<li>PagerDuty answered 400: Event object is invalid</li>" in cell
    assert "503" not in cell


def test_a_failure_without_an_answer_says_so(admin_client, destination):
    deliver(destination, status="failed", created_at=days_ago(1), last_error="Connection refused")
    row = row_of(page(admin_client), destination)
    assert "no answer" in row and "<li>Connection refused</li>" in row


def test_totals_across_destinations(admin_client, destination):
    other = make_destination("Platform", "A" * 32)
    now = timezone.now()
    deliver(destination, status="pending", created_at=now)
    deliver(other, status="sending", created_at=now)
    deliver(other, status="failed", created_at=now - timedelta(hours=2))
    deliver(other, status="failed", created_at=now - timedelta(hours=30))  # finished before 24 h
    deliver(destination, status="delivered", created_at=now - timedelta(hours=1))

    text = page(admin_client)
    assert re.search(r'id="health-pending"><strong>2</strong>', text)
    assert re.search(r'id="health-failed-recently"><strong>1</strong>', text)
    assert re.search(r'id="health-delivered-recently"><strong>1</strong>', text)


def test_totals_count_pages_and_tests_apart(admin_client, destination):
    now = timezone.now()
    test_key = f"{TEST_DEDUP_PREFIX}{'b' * 32}"
    deliver(destination, status="pending", created_at=now)  # a page
    deliver(destination, status="failed", created_at=now, kind=DeliveryKind.TEST)
    deliver(destination, status="pending", created_at=now, kind="resolve", dedup_key=test_key)
    deliver(destination, status="sending", created_at=now, kind=DeliveryKind.TEST)
    deliver(destination, status="delivered", created_at=now, kind=DeliveryKind.TEST)

    text = page(admin_client)
    pending = text[text.index('id="health-pending">') :]
    assert pending.startswith('id="health-pending"><strong>1</strong> page pending or sending')
    assert "and 2 tests</div>" in pending[: pending.index("</li>")]
    failed = text[text.index('id="health-failed-recently">') :]
    assert failed.startswith('id="health-failed-recently"><strong>0</strong> pages failed')
    assert "and 1 test</div>" in failed[: failed.index("</li>")]
    delivered = text[text.index('id="health-delivered-recently">') :]
    assert delivered.startswith('id="health-delivered-recently"><strong>0</strong> pages')
    assert "and 1 test</div>" in delivered[: delivered.index("</li>")]
    # The oldest pending delivery is the page (queued first); a test there would say so.
    row = row_of(text, destination)
    assert "pending, 3 unfinished" in row and "(test alert)" in row  # the failed test


def test_disabled_destinations_are_listed_and_marked(admin_client):
    off = make_destination("Retired", "A" * 32, enabled=False)
    row = row_of(page(admin_client), off)
    assert "Retired" in row and "disabled" in row
    assert f'href="{reverse("admin:destinations_destination_change", args=[off.pk])}"' in row


def test_texts_from_users_and_pagerduty_are_escaped(admin_client):
    sneaky = make_destination("<script>alert(1)</script>", "A" * 32)
    deliver(
        sneaky, status="failed", created_at=days_ago(1), pagerduty_message="<img src=x onerror=1>"
    )
    text = page(admin_client)
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    assert "<img src=x" not in text


def test_no_routing_key_is_ever_shown(admin_client, destination):
    deliver(destination, status="failed", created_at=days_ago(1))
    deliver(destination, status="delivered", created_at=days_ago(2))
    text = page(admin_client)
    assert ROUTING_KEY not in text
    assert ROUTING_KEY[-4:] not in text  # not even the masked form: the page has no use for it


def test_the_page_needs_nothing_from_elsewhere(admin_client, destination):
    deliver(destination, status="delivered", created_at=days_ago(1))
    text = page(admin_client)
    content = text[text.index('<div id="content-main">') : text.index('<footer id="footer">')]
    assert "<script" not in content
    assert "http://" not in content and "https://" not in content
    assert '<svg class="health-chart"' in content


# --- Empty states -----------------------------------------------------------------------------


def test_without_destinations_it_says_how_to_add_one(admin_client):
    text = page(admin_client)
    assert "No destinations yet." in text
    assert reverse("admin:destinations_destination_add") in text


def test_without_deliveries_it_says_so(admin_client, destination):
    text = page(admin_client)
    assert "No deliveries in the last 14 days." in text
    assert "No deliveries in the last 14 days</span>" in row_of(text, destination)
    assert "<svg" not in row_of(text, destination)


# --- Day boundaries and helpers ----------------------------------------------------------------


def test_days_follow_the_current_time_zone(destination):
    with timezone.override("America/New_York"):
        now = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.get_current_timezone())
        # 03:00 UTC on the 25th is still the 24th in New York.
        deliver(
            destination, status="delivered", created_at=datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
        )
        report = delivery_health(now=now)
    [health] = report.destinations
    counted = {day.day: day.delivered for day in health.days if day.delivered}
    assert counted == {date(2026, 11, 24): 1}
    assert report.days[-1] == date(2026, 11, 26) and len(report.days) == 14


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [([5.0], 50, 5.0), ([5.0], 95, 5.0), ([1.0, 2.0], 50, 1.0), ([1.0, 2.0], 95, 2.0)],
)
def test_nearest_rank(values, percent, expected):
    histogram = Histogram()
    for value in values:
        # Buckets far apart: each holds one value, so the percentile is that value.
        histogram.add(int(value * 100), 1, value)
    assert histogram.percentile(percent) == expected


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (None, "—"),
        (4, "4 ms"),
        (999, "999 ms"),
        (4200, "4.2 s"),
        (45_000, "45 s"),
        (90_000, "1.5 min"),
        (3 * 3600_000, "3.0 h"),
        (50 * 3600_000, "2.1 d"),
    ],
)
def test_durations_read_as_a_person_would_say_them(milliseconds, text):
    assert human_duration_ms(milliseconds) == text


# --- Cost ---------------------------------------------------------------------------------------


def build_deliveries(destinations: int, per_destination: int) -> None:
    """A realistic log: 14 days of mixed outcomes and latencies for each destination."""
    rng = random.Random(destinations)
    created = []
    for n in range(destinations):
        created.append(Destination(name=f"load {destinations}-{n:03d}", enabled=n % 7 != 0))
        created[-1].set_routing_key(f"{n:032d}")
    Destination.objects.bulk_create(created)
    now = timezone.now()
    rows = []
    for destination in Destination.objects.filter(name__startswith=f"load {destinations}-"):
        for _ in range(per_destination):
            # Within 13 days: the window starts at midnight 13 days before today.
            at = now - timedelta(seconds=rng.uniform(0, 13 * 86400))
            roll = rng.random()
            status = (
                DeliveryStatus.DELIVERED
                if roll < 0.9
                else DeliveryStatus.FAILED
                if roll < 0.96
                else rng.choice([DeliveryStatus.PENDING, DeliveryStatus.SENDING])
            )
            done = at + timedelta(milliseconds=rng.lognormvariate(6, 1.2))
            rows.append(
                Delivery(
                    destination=destination,
                    kind=DeliveryKind.TEST if rng.random() < 0.03 else DeliveryKind.TRIGGER,
                    event={},
                    dedup_key="k",
                    status=status,
                    created_at=at,
                    queued_at=at,
                    delivered_at=done if status == DeliveryStatus.DELIVERED else None,
                    finished_at=done if status in ("delivered", "failed") else None,
                    last_status_code=202 if status == DeliveryStatus.DELIVERED else 400,
                    pagerduty_message="Event object is invalid" if status == "failed" else "",
                )
            )
    Delivery.objects.bulk_create(rows, batch_size=2000)


@pytest.mark.slow  # seeds thousands of deliveries
def test_the_number_of_queries_does_not_grow_with_destinations(admin_client):
    build_deliveries(5, 200)
    admin_client.get(URL)  # the session and permission caches settle
    with CaptureQueriesContext(connection) as few:
        page(admin_client)
    build_deliveries(50, 400)
    with CaptureQueriesContext(connection) as many:
        text = page(admin_client)
    # Nine for the figures (the rollups are not read: no day is rolled up here), two for the
    # session and user.
    assert len(few) == len(many) <= 11
    assert text.count('class="health-row"') == 55
    start = text.index('<table id="health-table">')
    table = text[start : text.index("</table>", start)]
    assert table.count("<title>") == 55 * 14

    report = delivery_health()
    counted = sum(day.total for health in report.destinations for day in health.days)
    assert counted == Delivery.objects.count() == 5 * 200 + 50 * 400
    assert all(health.p50_ms <= health.p95_ms for health in report.destinations)


def test_destinations_beyond_a_page_are_on_the_next(admin_client, settings):
    build_deliveries(120, 3)
    with CaptureQueriesContext(connection) as first:
        first_page = page(admin_client)
    with CaptureQueriesContext(connection) as second:
        second_page = page(admin_client, page=2)
    assert first_page.count('class="health-row"') == 100
    assert second_page.count('class="health-row"') == 20
    assert "load 120-119" in second_page and "load 120-119" not in first_page
    assert 'href="?page=2"' in first_page
    assert len(first) == len(second)
