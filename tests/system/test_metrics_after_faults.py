"""After a fault-matrix run, /metrics counts exactly what the delivery log stored."""

import signal
from collections import Counter

import pytest
from django.db import connection
from django.db.models import Count, Q, Sum

from destinations.models import FINISHED, UNFINISHED, Delivery, DeliveryAttempt, DeliveryKind
from destinations.services import TEST_DEDUP_PREFIX, send_test_alert
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY
from tests.support.scrape import scrape
from tests.support.worker_process import RunningWorker, wait_until
from tests.system.test_faults import RETRY_AFTER_SECONDS, Episode, destinations, queue_spread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DELIVERIES = "detection_destinations_deliveries_total"
DURATION = "detection_destinations_attempt_duration_seconds"
RATE_LIMITED = "detection_destinations_rate_limited_total"
UNLIMITED_BUDGET = {"DELIVERY_RATE_PER_MINUTE": "1000000", "DELIVERY_RATE_BURST": "100000"}
# One after another, each hitting about half of the requests until it has hit this many.
FAULTS = [
    (Fault.status(429, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}), 30),
    (Fault.status(429), 15),
    (Fault.status(500), 30),
    (Fault.status(503), 15),
    (Fault.malformed_success(), 15),
    (Fault.reset(), 10),
    (Fault.delay(1.5), 3),  # slower than the destinations' 1 s timeout
]


def stored_kind(delivery) -> str:
    """The kind as the metrics count it: a test alert's resolve is a test too."""
    if delivery["dedup_key"].startswith(TEST_DEDUP_PREFIX):
        return DeliveryKind.TEST
    return delivery["kind"]


def test_metrics_counters_agree_with_the_stored_rows_after_a_fault_matrix_run(
    client, fake_pagerduty, settings
):
    settings.DELIVERY_RATE_BURST = 100_000
    settings.DELIVERY_RATE_PER_MINUTE = 1_000_000.0
    settings.DELIVERY_MAX_ATTEMPTS = 4  # some deliveries meet a fault four times and give up
    targets = destinations(4, timeout_seconds=1)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, 400)  # one destination refuses every page
    for target in targets[:2]:
        send_test_alert(destination=target, sent_by="admin", resolve=True)
    for seed, (fault, times) in enumerate(FAULTS):
        fake_pagerduty.inject(fault, times=times, probability=0.5, seed=seed)
    queue_spread(120, targets)

    Episode().run_until_settled(concurrency=8)

    expected, by_destination = assert_metrics_match_the_stored_rows(client)
    assert {status for _, _, status in expected} == {"delivered", "failed"}
    assert any(kind == "test" for _, kind, _ in expected)
    assert len(by_destination) == 4
    assert sum(row["rate_limited"] for row in by_destination.values()) == 45
    pages = DeliveryAttempt.objects.exclude(delivery__dedup_key__startswith=TEST_DEDUP_PREFIX)
    print(
        f"\n/metrics after the fault matrix: {Delivery.objects.count()} deliveries, "
        f"{pages.count()} page attempts, {dict(Counter(s for _, _, s in expected.elements()))}"
    )


def test_three_worker_processes_at_once_add_up_to_the_stored_rows(client, fake_pagerduty):
    """Workers recording at the same moment add to the same tally rows; none is lost."""
    total = 600 if connection.vendor == "postgresql" else 200
    targets = destinations(4)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, 400)
    fake_pagerduty.inject(
        Fault.status(429, headers={"Retry-After": "1"}), times=40, probability=0.3
    )
    fake_pagerduty.inject(Fault.status(502), times=40, probability=0.3, seed=1)
    queue_spread(total, targets)
    fake_pagerduty.latency = 0.01
    environment = {**UNLIMITED_BUDGET, "DELIVERY_BACKOFF_BASE_SECONDS": "0.2"}
    workers = [
        RunningWorker(fake_pagerduty.url, "--concurrency", "4", **environment) for _ in range(3)
    ]
    try:
        wait_until(
            lambda: not Delivery.objects.filter(status__in=UNFINISHED).exists(),
            timeout=120,
            what=f"{total} deliveries finished",
        )
    finally:
        outputs = [worker.stop(signal.SIGTERM) for worker in workers]
    assert all("Worker stopped: delivered" in output for output in outputs), outputs
    # No batch had to be recorded again (a deadlock on the tally rows would show here).
    assert not any("worker.record_failed" in output for output in outputs)

    expected, by_destination = assert_metrics_match_the_stored_rows(client)
    assert sum(expected.values()) == total
    assert sum(row["rate_limited"] for row in by_destination.values()) == 40
    print(f"\n/metrics after 3 workers at once: {dict(expected)}")


def assert_metrics_match_the_stored_rows(client) -> tuple[Counter, dict]:
    """Scrape /metrics; every counter equals what the delivery log stored. Returns the counts."""
    stored = Delivery.objects.values("destination__name", "kind", "dedup_key", "status")
    expected = Counter(
        (row["destination__name"], stored_kind(row), row["status"])
        for row in stored
        if row["status"] in FINISHED
    )
    assert sum(expected.values()) == Delivery.objects.count()  # nothing left unfinished

    scraped = scrape(client)
    counted = {
        (dict(labels)["destination"], dict(labels)["kind"], dict(labels)["outcome"]): value
        for labels, value in scraped.series(DELIVERIES).items()
        if value
    }
    assert counted == expected

    pages = DeliveryAttempt.objects.exclude(delivery__dedup_key__startswith=TEST_DEDUP_PREFIX)
    by_destination = {
        row["delivery__destination__name"]: row
        for row in pages.values("delivery__destination__name").annotate(
            attempts=Count("pk"),
            milliseconds=Sum("duration_ms"),
            rate_limited=Count("pk", filter=Q(status_code=429)),
        )
    }
    for name, row in by_destination.items():
        assert scraped.value(f"{DURATION}_count", destination=name) == row["attempts"]
        assert scraped.value(f"{DURATION}_bucket", destination=name, le="+Inf") == row["attempts"]
        assert scraped.value(f"{DURATION}_sum", destination=name) == pytest.approx(
            row["milliseconds"] / 1000
        )
        assert scraped.value(RATE_LIMITED, destination=name) == row["rate_limited"]
    assert scraped.value("detection_destinations_queue", status="pending") == 0
    return expected, by_destination
