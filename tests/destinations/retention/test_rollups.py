"""Daily rollups: past days counted from raw rows, kept after pruning, read by the health page."""

import contextlib
import io
from datetime import time, timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from destinations.delivery.outbox import retry_now
from destinations.health import delivery_health
from destinations.models import (
    DailyRollup,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    RolledUpDay,
)
from destinations.retention.latency import Histogram
from destinations.retention.rollups import roll_up_past_days
from destinations.services import TEST_DEDUP_PREFIX
from tests.support.factories import days_ago, make_destination, stored_delivery, with_attempt

pytestmark = pytest.mark.django_db

URL = reverse("admin:destinations_health")


def day(days: int):
    return timezone.localdate() - timedelta(days=days)


def rollup(destination, days: int) -> DailyRollup:
    return DailyRollup.objects.get(destination=destination, day=day(days))


def test_a_past_day_is_counted_per_destination_as_the_health_page_counts_it(destination):
    other = make_destination("Platform", "A" * 32)
    for latency in (100, 200, 300):
        stored_delivery(destination, status="delivered", created_at=days_ago(2), latency_ms=latency)
    stored_delivery(destination, status="failed", created_at=days_ago(2))
    stored_delivery(destination, status="delivered", created_at=days_ago(2), kind="test")
    stored_delivery(
        destination,
        status="failed",
        created_at=days_ago(2),
        kind=DeliveryKind.RESOLVE,
        dedup_key=f"{TEST_DEDUP_PREFIX}{'c' * 32}",
    )
    stored_delivery(other, status="delivered", created_at=days_ago(2, time(23, 59)))
    stored_delivery(other, status="delivered", created_at=days_ago(1, time(0, 0)))
    stored_delivery(other, status="delivered", created_at=timezone.now())  # today: not yet

    report = roll_up_past_days()

    assert report.days == [day(2), day(1)]
    mine = rollup(destination, 2)
    assert (mine.delivered, mine.failed, mine.other, mine.tests) == (4, 2, 0, 2)
    assert (mine.pages_delivered, mine.pages_failed) == (3, 1)
    latency = Histogram.from_json(mine.latency)
    assert latency.count == 3
    # Milliseconds as the database computes them (SQLite's julianday() is exact to about one).
    assert latency.percentile(50) == pytest.approx(200, abs=1)
    assert latency.percentile(95) == pytest.approx(300, abs=1)
    assert rollup(other, 2).delivered == rollup(other, 1).delivered == 1
    assert not DailyRollup.objects.filter(day=timezone.localdate()).exists()
    assert set(RolledUpDay.objects.values_list("day", flat=True)) == {day(2), day(1)}


def test_an_existing_installation_gets_every_past_day_rolled_up(destination):
    stored_delivery(destination, status="delivered", created_at=days_ago(40))
    stored_delivery(destination, status="delivered", created_at=days_ago(3))

    report = roll_up_past_days()

    # Every day from the first delivery's to yesterday, those without deliveries too (as zero).
    assert report.days == [day(n) for n in range(40, 0, -1)]
    assert RolledUpDay.objects.count() == 40
    assert DailyRollup.objects.count() == 2
    assert roll_up_past_days().days == []  # nothing changed since


def test_a_first_pass_on_the_first_day_still_rolls_that_day_up_the_next(destination):
    stored_delivery(destination, status="delivered", created_at=timezone.now())
    assert roll_up_past_days().days == []  # nothing past yet
    tomorrow = timezone.now() + timedelta(days=1)
    assert roll_up_past_days(now=tomorrow).days == [timezone.localdate()]
    assert DailyRollup.objects.get().delivered == 1


def test_a_day_rolled_up_with_unfinished_deliveries_is_rolled_up_again(destination):
    late = stored_delivery(destination, status="sending", created_at=days_ago(1, time(23, 59)))
    roll_up_past_days()
    assert (rollup(destination, 1).other, RolledUpDay.objects.get().unfinished) == (1, 1)

    Delivery.objects.filter(pk=late.pk).update(
        status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), finished_at=timezone.now()
    )
    assert roll_up_past_days().days == [day(1)]
    assert (rollup(destination, 1).delivered, rollup(destination, 1).other) == (1, 0)
    assert RolledUpDay.objects.get().unfinished == 0


def test_a_failure_retried_and_delivered_later_is_counted_again(destination):
    failed = stored_delivery(destination, status="failed", created_at=days_ago(5))
    roll_up_past_days()
    assert rollup(destination, 5).pages_failed == 1

    retry_now([failed])
    Delivery.objects.filter(pk=failed.pk).update(
        status=DeliveryStatus.DELIVERED, delivered_at=timezone.now(), finished_at=timezone.now()
    )
    assert roll_up_past_days().days == [day(5)]
    assert (rollup(destination, 5).pages_failed, rollup(destination, 5).pages_delivered) == (0, 1)


def test_after_pruning_the_health_page_still_shows_the_past_days(admin_client, destination):
    for n in range(3):
        with_attempt(
            stored_delivery(
                destination, status="delivered", created_at=days_ago(3), latency_ms=400 * 2**n
            )
        )
    with_attempt(stored_delivery(destination, status="failed", created_at=days_ago(3)))
    before = admin_client.get(URL).content.decode()
    title = f"<title>{day(3):%a} {day(3).day} {day(3):%b}: 3 delivered, 1 failed, 0 pending"
    assert title in before

    call_command("prune_deliveries", "--days", "1", stdout=io.StringIO())
    assert not Delivery.objects.exists()

    after = admin_client.get(URL).content.decode()
    assert title in after
    assert "4 in 14 days</div>" in after
    assert ">75.0%<" in after and 'title="3 pages delivered, 1 failed"' in after
    assert 'health-latency">800 ms / 1.6 s</td>' in after
    [health] = delivery_health().destinations
    assert (health.delivered, health.failed) == (3, 1)
    assert (health.p50_ms, health.p95_ms) == (pytest.approx(800, abs=1), pytest.approx(1600, abs=1))


# --- What the page costs -------------------------------------------------------------------------


@contextlib.contextmanager
def rows_read():
    """Count the work the database does reading deliveries: rows on PostgreSQL, VM steps on SQLite.

    PostgreSQL counts the rows this transaction read from the delivery table; sequential scans are
    turned off so a missing index shows as a scan of every row, whatever the table's size. SQLite
    has no such counter; its virtual machine's steps (counted in tens) grow with each row it visits.
    """
    work = {"n": 0}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            read = (
                "SELECT COALESCE(SUM(seq_tup_read + COALESCE(idx_tup_fetch, 0)), 0) "
                "FROM pg_stat_xact_user_tables WHERE relname = 'destinations_delivery'"
            )
            cursor.execute(read)
            start = int(cursor.fetchone()[0])
            yield work
            cursor.execute(read)
            work["n"] = int(cursor.fetchone()[0]) - start
        return
    raw = connection.connection

    def step() -> int:
        work["n"] += 1
        return 0

    raw.set_progress_handler(step, 10)
    try:
        yield work
    finally:
        raw.set_progress_handler(None, 0)


def page_cost(client) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries, rows_read() as work:
        assert client.get(URL).status_code == 200
    return len(queries), work["n"]


def old_deliveries(destinations, count: int) -> None:
    """Finished deliveries on past days: inside the window (days 2 and 9) and before it."""
    rows = []
    for n in range(count):
        created = days_ago((2, 9, 30, 200)[n % 4], time(n % 24, n % 60))
        delivered = n % 10 != 0
        rows.append(
            Delivery(
                destination=destinations[n % len(destinations)],
                kind=DeliveryKind.TRIGGER,
                event={},
                dedup_key=f"k{n % 7}",
                status=DeliveryStatus.DELIVERED if delivered else DeliveryStatus.FAILED,
                created_at=created,
                queued_at=created,
                delivered_at=created + timedelta(milliseconds=50 + n % 900) if delivered else None,
                finished_at=created + timedelta(milliseconds=50 + n % 900),
            )
        )
    Delivery.objects.bulk_create(rows, batch_size=500)


def test_the_page_costs_the_same_with_10_or_thousands_of_old_deliveries(admin_client):
    destinations = [make_destination(f"Rota {n}", f"{n:032d}") for n in range(3)]
    now = timezone.now()
    # Today's deliveries, read raw either way; one unfinished, one failed.
    stored_delivery(destinations[0], status="pending", created_at=now)
    stored_delivery(destinations[1], status="failed", created_at=now)
    stored_delivery(destinations[2], status="delivered", created_at=now)
    old_deliveries(destinations, 10)
    roll_up_past_days()
    admin_client.get(URL)  # the session and permission caches settle
    few = page_cost(admin_client)

    old_deliveries(destinations, 4000)
    roll_up_past_days()
    many = page_cost(admin_client)

    (queries_few, read_few), (queries_many, read_many) = few, many
    assert queries_few == queries_many
    # The same work, give or take the planner's choices and deeper B-trees; reading the 4,000
    # old rows would add thousands of rows (PostgreSQL) or steps (SQLite).
    assert read_many <= read_few * 1.1 + 10, f"read {read_few} with 10, {read_many} with 4,010"
    # And the figures are all there: today's read raw, the past days' from their rollups.
    report = delivery_health()
    counted = sum(day.total for health in report.destinations for day in health.days)
    assert counted == Delivery.objects.filter(created_at__gte=report.since).count() == 2009
