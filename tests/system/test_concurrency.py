"""Several `deliver_alerts` processes share one queue: each event sent once, in incident order."""

# On PostgreSQL the claim uses FOR UPDATE SKIP LOCKED, so workers pass over each other's rows; on
# SQLite one writer at a time serialises the claims. The same test runs on both (smaller on
# SQLite); the SKIP LOCKED behaviour itself is proved on PostgreSQL only.

import re
import signal
import time
from collections import Counter, defaultdict

import pytest
from django.db import connection, transaction

from destinations.delivery.claims import LOST_LEASE_ERROR
from destinations.models import Delivery, DeliveryAttempt, DeliveryKind, DeliveryStatus
from tests.support.factories import make_destination, queue_event
from tests.support.leak_guard import register_secret
from tests.support.routing_keys import ROUTING_KEY
from tests.support.worker_process import RunningWorker, start_worker, wait_until, worker_thread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WORKERS = 3
CONCURRENCY = 4
DESTINATIONS = 10
# Deliveries that share a destination and dedup key form one incident and must arrive in order.
PER_INCIDENT = 5
WORKER_ENV = {
    # The budget has its own tests; here it would only stretch the drain out.
    "DELIVERY_RATE_PER_MINUTE": "1000000",
    "DELIVERY_RATE_BURST": "100000",
}


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def queue_incidents(count: int, per_incident: int = PER_INCIDENT) -> list:
    """Queue `count` deliveries over the destinations, `per_incident` to each incident, in order."""
    keys = [f"{n:02d}Cc7Vv9Bb1Nn3Mm5Ll7Kk9Jj1Hh3Gg5" for n in range(DESTINATIONS)]
    for key in keys:
        register_secret(key)
    targets = [make_destination(f"Rota {n}", key) for n, key in enumerate(keys)]
    rows = []
    for n in range(count):
        incident = f"incident-{n // (DESTINATIONS * per_incident)}-{n % DESTINATIONS}"
        rows.append(
            Delivery(
                destination=targets[n % DESTINATIONS],
                kind=DeliveryKind.TRIGGER,
                dedup_key=incident,
                event={
                    "event_action": "trigger",
                    "dedup_key": incident,
                    "payload": {"summary": f"n{n}", "severity": "info", "source": "tests"},
                },
            )
        )
    # One at a time, so ids (the queue order) follow n.
    return [Delivery.objects.bulk_create([row])[0] for row in rows]


def run_once(events_url: str) -> tuple[str, str]:
    """Run `deliver_alerts --once` to its end and return what it wrote."""
    worker = start_worker("--once", events_url=events_url, **WORKER_ENV)
    try:
        out, err = worker.communicate(timeout=60)
    finally:
        worker.kill()
        worker.wait()
    assert worker.returncode == 0, err
    return out, err


def delivered_by(output: str) -> int:
    match = re.search(r"Worker stopped: delivered (\d+)", output)
    assert match, output[-2000:]
    return int(match.group(1))


def test_three_workers_send_each_delivery_exactly_once_in_incident_order(fake_pagerduty):
    total = 1000 if on_postgresql() else 300
    queued = queue_incidents(total)
    fake_pagerduty.latency = 0.02
    workers = []
    try:
        workers = [
            RunningWorker(fake_pagerduty.url, "--concurrency", str(CONCURRENCY), **WORKER_ENV)
            for _ in range(WORKERS)
        ]
        wait_until(
            lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == total,
            timeout=100,
            what=f"{total} deliveries",
        )
        outputs = [worker.stop(signal.SIGTERM) for worker in workers]
    finally:
        for worker in workers:
            worker.stop(signal.SIGKILL)

    assert [worker.process.returncode for worker in workers] == [0] * WORKERS
    shares = [delivered_by(output) for output in outputs]
    assert sum(shares) == total
    assert all(share > 0 for share in shares), shares  # all three took part

    # Each event reached PagerDuty exactly once, and was attempted exactly once.
    sent = Counter(
        (record.json["dedup_key"], record.json["payload"]["summary"])
        for record in fake_pagerduty.received
    )
    assert sent == Counter((d.dedup_key, d.event["payload"]["summary"]) for d in queued)
    assert all(record.accepted for record in fake_pagerduty.received)
    assert DeliveryAttempt.objects.count() == total
    assert set(DeliveryAttempt.objects.values_list("number", "result")) == {(1, "delivered")}

    # Within an incident (its dedup key names its destination), PagerDuty saw the events in the
    # order they were queued.
    arrived, expected = defaultdict(list), defaultdict(list)
    for record in fake_pagerduty.received:
        arrived[record.json["dedup_key"]].append(record.json["payload"]["summary"])
    for delivery in sorted(queued, key=lambda d: d.pk):
        expected[delivery.dedup_key].append(delivery.event["payload"]["summary"])
    assert len(expected) == total // PER_INCIDENT
    assert arrived == expected
    print(f"\n{WORKERS} workers delivered {total} events once each, shares {shares}")


def test_a_worker_passes_over_rows_another_worker_holds(fake_pagerduty):
    if not on_postgresql():
        pytest.skip(
            "SKIP LOCKED is PostgreSQL's: on SQLite a claim waits for the one writer instead "
            "(run with DATABASE_URL=postgres://… to prove this)"
        )
    queued = queue_incidents(40, per_incident=1)
    held, free = queued[:20], queued[20:]
    with transaction.atomic():
        # Another worker's claim in progress: these rows are locked until it commits.
        list(Delivery.objects.select_for_update().filter(pk__in=[d.pk for d in held]))
        started = time.monotonic()
        out, err = run_once(fake_pagerduty.url)
        waited = time.monotonic() - started
        assert "delivered 20," in out, err
    assert waited < 15  # it did not wait for the locks
    sent = {record.json["payload"]["summary"] for record in fake_pagerduty.received}
    assert sent == {d.event["payload"]["summary"] for d in free}
    assert not Delivery.objects.filter(pk__in=[d.pk for d in held]).exclude(status="pending")

    out, err = run_once(fake_pagerduty.url)
    assert "delivered 20," in out, err
    assert Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 40


def test_a_slow_pagerduty_never_gets_a_row_twice(fake_pagerduty, settings):
    # The lease is the timeout plus half of it, as with the defaults (30 s + 15 s); PagerDuty
    # answers every request, just slowly (1.5 s of the 2 s allowed: near the timeout, with room
    # for a busy machine, where 0.9 s of 1 s once timed out under load). One worker is enough.
    settings.DELIVERY_LEASE_MARGIN_SECONDS = 1.0
    destination = make_destination("Slow rota", ROUTING_KEY, timeout_seconds=2)
    for n in range(4):
        queue_event(destination, f"incident-{n}")
    fake_pagerduty.latency = 1.5
    with worker_thread(concurrency=2):
        wait_until(
            lambda: Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 4,
            timeout=30,
            what="4 deliveries",
        )

    sent = Counter(record.json["dedup_key"] for record in fake_pagerduty.received)
    assert sent == {f"incident-{n}": 1 for n in range(4)}
    assert not DeliveryAttempt.objects.filter(error=LOST_LEASE_ERROR).exists()
