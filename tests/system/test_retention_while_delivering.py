"""Pruning while a worker keeps delivering loses no unfinished delivery (design §12)."""

import io
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from destinations.delivery.outbox import retry_now
from destinations.models import (
    UNFINISHED,
    DailyRollup,
    Delivery,
    DeliveryAttempt,
    DeliveryKind,
    DeliveryStatus,
)
from tests.support.factories import days_ago, queue_event
from tests.support.worker_process import wait_until, worker_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

OLD = 3000  # finished long ago: what the prune deletes
RETRIED = 40  # old failures an admin re-queues while the prune runs


def seed_old_log(destination) -> tuple[list[int], list[int]]:
    """Old finished deliveries with one attempt each, and old unfinished ones; their ids."""
    rows = []
    for n in range(OLD):
        created = days_ago(100 + n % 5) + timedelta(seconds=n)
        failed = n % 10 == 0
        rows.append(
            Delivery(
                destination=destination,
                kind=DeliveryKind.TRIGGER,
                event={
                    "event_action": "trigger",
                    "dedup_key": f"old-{n}",
                    "payload": {"summary": f"old {n}", "severity": "info", "source": "tests"},
                },
                dedup_key=f"old-{n}",
                status=DeliveryStatus.FAILED if failed else DeliveryStatus.DELIVERED,
                created_at=created,
                queued_at=created,
                delivered_at=None if failed else created + timedelta(seconds=1),
                finished_at=created + timedelta(seconds=1),
            )
        )
    finished = Delivery.objects.bulk_create(rows, batch_size=500)
    DeliveryAttempt.objects.bulk_create(
        (
            DeliveryAttempt(
                delivery=row,
                number=1,
                started_at=row.created_at,
                status_code=400 if row.status == DeliveryStatus.FAILED else 202,
                result=row.status,
            )
            for row in finished
        ),
        batch_size=500,
    )
    # Queued long ago and never sent (a worker was down): old, but unfinished.
    stale = [queue_event(destination, f"stale-{n}") for n in range(10)]
    Delivery.objects.filter(pk__in=[row.pk for row in stale]).update(
        created_at=days_ago(300), queued_at=timezone.now()
    )
    failed_ids = [row.pk for row in finished if row.status == DeliveryStatus.FAILED]
    return failed_ids, [row.pk for row in stale]


def test_pruning_while_a_worker_keeps_delivering_loses_no_unfinished_delivery(
    destination, fake_pagerduty, settings
):
    settings.DELIVERY_RATE_PER_MINUTE = 1_000_000
    settings.DELIVERY_RATE_BURST = 100_000
    old_failures, stale = seed_old_log(destination)
    new: list[int] = []
    retried: dict[str, int] = {}
    pruning = threading.Event()
    done = threading.Event()

    def keep_queueing() -> None:
        """A steady stream of new pages, and an admin's Retry now halfway through the prune."""
        try:
            pruning.wait(timeout=30)
            while not done.is_set():
                new.append(queue_event(destination, f"new-{len(new)}").pk)
                if len(new) == 20:
                    picked = old_failures[-RETRIED:]
                    retried["requeued"] = retry_now(Delivery.objects.filter(pk__in=picked))
                    retried["ids"] = picked
                time.sleep(0.01)
        finally:
            connection.close()

    feeder = threading.Thread(target=keep_queueing, daemon=True)
    with worker_thread(concurrency=4):
        feeder.start()
        pruning.set()
        out = io.StringIO()
        call_command("prune_deliveries", "--batch-size", "100", stdout=out)
        done.set()
        feeder.join(timeout=30)
        wait_until(
            lambda: not Delivery.objects.filter(status__in=UNFINISHED).exists(),
            timeout=60,
            what="the worker to deliver everything unfinished",
        )

    assert len(new) > 20 and retried["requeued"] > 0, (len(new), retried)
    # Every new page and every old unfinished one was delivered, once, and is still logged.
    kept = dict(Delivery.objects.filter(pk__in=new + stale).values_list("pk", "status"))
    assert set(kept) == set(new + stale)
    assert set(kept.values()) == {DeliveryStatus.DELIVERED}
    sent = Counter(event["dedup_key"] for event in fake_pagerduty.events)
    expected = {f"new-{n}" for n in range(len(new))} | {f"stale-{n}" for n in range(10)}
    assert expected <= set(sent) and all(sent[key] == 1 for key in expected)
    # Re-queued failures were never deleted: each was delivered, its first attempt still logged.
    requeued = Delivery.objects.filter(pk__in=retried["ids"])
    assert requeued.count() == retried["requeued"]
    assert {row.status for row in requeued} == {DeliveryStatus.DELIVERED}
    assert all(row.attempt_log.count() == 2 for row in requeued)
    # Everything else old went, with its attempts; the days it filled are rolled up.
    old_left = Delivery.objects.filter(dedup_key__startswith="old-").count()
    assert old_left == retried["requeued"]
    assert DeliveryAttempt.objects.filter(delivery__isnull=True).count() == 0
    pruned = OLD - retried["requeued"]
    assert f"Pruned {pruned:,} deliveries and {pruned:,} attempts" in out.getvalue()
    assert sum(rollup.delivered + rollup.failed for rollup in DailyRollup.objects.all()) >= OLD
