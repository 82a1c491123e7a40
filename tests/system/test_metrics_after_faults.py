"""After a fault-matrix run, /metrics counts exactly what the delivery log stored."""

from collections import Counter

import pytest
from django.db.models import Count, Q, Sum

from destinations.models import FINISHED, Delivery, DeliveryAttempt, DeliveryKind
from destinations.services import TEST_DEDUP_PREFIX, send_test_alert
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY
from tests.support.scrape import scrape
from tests.system.test_faults import RETRY_AFTER_SECONDS, Episode, destinations, queue_spread

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DELIVERIES = "detection_destinations_deliveries_total"
DURATION = "detection_destinations_attempt_duration_seconds"
RATE_LIMITED = "detection_destinations_rate_limited_total"
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

    stored = Delivery.objects.values("destination__name", "kind", "dedup_key", "status")
    expected = Counter(
        (row["destination__name"], stored_kind(row), row["status"])
        for row in stored
        if row["status"] in FINISHED
    )
    assert sum(expected.values()) == Delivery.objects.count()  # nothing left unfinished
    outcomes = {status for _, _, status in expected}
    assert outcomes == {"delivered", "failed"}
    assert any(kind == "test" for _, kind, _ in expected)

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
    assert len(by_destination) == 4
    for name, row in by_destination.items():
        assert scraped.value(f"{DURATION}_count", destination=name) == row["attempts"]
        assert scraped.value(f"{DURATION}_bucket", destination=name, le="+Inf") == row["attempts"]
        assert scraped.value(f"{DURATION}_sum", destination=name) == pytest.approx(
            row["milliseconds"] / 1000
        )
        assert scraped.value(RATE_LIMITED, destination=name) == row["rate_limited"]
    assert sum(row["rate_limited"] for row in by_destination.values()) == 45
    assert scraped.value("detection_destinations_queue", status="pending") == 0
    print(
        f"\n/metrics after the fault matrix: {Delivery.objects.count()} deliveries, "
        f"{pages.count()} page attempts, {dict(Counter(s for _, _, s in expected.elements()))}"
    )
