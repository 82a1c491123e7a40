"""The daily housekeeping: one worker at a time runs it, in a thread beside the deliveries."""

import io
import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from destinations.models import DailyRollup, Delivery, Housekeeping
from destinations.retention.housekeeping import INTERVAL, Housekeeper, claim, release
from destinations.retention.rollups import HOUSEKEEPING
from tests.support.factories import days_ago, stored_delivery, with_attempt


@pytest.mark.django_db
def test_of_two_housekeepers_one_runs_and_the_other_skips_until_the_next_day():
    now = timezone.now()
    assert claim(holder="host-a:1", now=now)
    release(holder="host-a:1", result="done")
    assert not claim(holder="host-b:2", now=now + timedelta(minutes=5))  # not due again yet
    assert not claim(holder="host-a:1", now=now + INTERVAL - timedelta(seconds=1))
    assert claim(holder="host-b:2", now=now + INTERVAL)
    row = Housekeeping.objects.get(name=HOUSEKEEPING)
    assert (row.holder, row.next_run_at) == ("host-b:2", now + 2 * INTERVAL)


@pytest.mark.django_db
def test_a_run_that_died_holds_the_lease_only_until_it_expires():
    now = timezone.now()
    assert claim(holder="host-a:1", now=now, due_only=False)  # then the process is killed
    assert not claim(holder="host-b:2", now=now + timedelta(minutes=1), due_only=False)
    assert claim(holder="host-b:2", now=now + timedelta(hours=1), due_only=False)


@pytest.mark.django_db(transaction=True)
def test_two_workers_housekeeping_at_the_same_moment_run_it_once(destination):
    for _ in range(3):
        with_attempt(stored_delivery(destination, status="delivered", created_at=days_ago(100)))
    keepers = [Housekeeper(once=True) for _ in range(2)]
    keepers[1].holder = "another-host:1"
    reports = []
    start = threading.Barrier(2)

    def run(keeper):
        start.wait()
        try:
            reports.append(keeper.run_if_due())
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(keeper,)) for keeper in keepers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    ran = [report for report in reports if report is not None]
    assert len(reports) == 2 and len(ran) == 1
    assert ran[0].pruned.deleted == 3
    assert not Delivery.objects.exists()
    assert DailyRollup.objects.get().delivered == 3  # rolled up before it was pruned
    row = Housekeeping.objects.get(name=HOUSEKEEPING)
    assert row.running_until is None and row.last_result.startswith("rolled up")


@pytest.mark.django_db(transaction=True)
def test_deliver_alerts_once_leaves_it_unless_asked(destination):
    with_attempt(stored_delivery(destination, status="delivered", created_at=days_ago(100)))
    call_command("deliver_alerts", "--once", stdout=io.StringIO())
    assert Delivery.objects.count() == 1
    assert not Housekeeping.objects.exists()

    call_command("deliver_alerts", "--once", "--housekeeping", stdout=io.StringIO())
    assert not Delivery.objects.exists()
    assert Housekeeping.objects.get().next_run_at > timezone.now() + timedelta(hours=23)
