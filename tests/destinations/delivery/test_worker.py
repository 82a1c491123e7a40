"""The delivery worker against the fake PagerDuty: outcomes, retries, limits, budget, order."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from destinations.delivery.claims import LOST_LEASE_ERROR, claim_due
from destinations.delivery.worker import Worker
from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus, RateBudget
from destinations.pagerduty.events import dedup_key_for
from tests.support.factories import (
    drain,
    make_destination,
    make_detection,
    queue_event,
    record_run,
)
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def paging(fake_pagerduty):
    """A destination attached to a detection, and the fake PagerDuty it pages."""
    destination = make_destination("SecOps", ROUTING_KEY, component="auth")
    detection = make_detection("Suspicious Login Attempts", destination)
    return destination, detection


def test_a_matching_run_reaches_pagerduty_and_is_logged(paging, fake_pagerduty):
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1", replay_link="https://app.example.com/replay/1")
    stats = drain()

    assert stats.delivered == 1
    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY
    assert event["dedup_key"] == dedup_key_for("Suspicious Login Attempts")
    assert event["payload"]["summary"] == (
        "[HIGH] Suspicious Login Attempts - https://app.example.com/replay/1"
    )
    assert event["payload"]["custom_details"]["run_id"] == "run-1"
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert delivery.pagerduty_message == "Event processed"
    assert delivery.pagerduty_dedup_key == event["dedup_key"]
    assert delivery.delivered_at is not None
    [attempt] = delivery.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.result) == (1, 202, "delivered")


def test_a_drain_ends_once_its_last_answer_is_recorded_not_a_poll_interval_later(paging):
    _, detection = paging
    record_run(detection, "run-1")
    worker = Worker(concurrency=2, poll_interval=30)
    finished = threading.Event()

    def drain_once():
        worker.run(once=True)
        finished.set()

    drained = threading.Thread(target=drain_once)
    drained.start()

    try:
        # A drain that waited out the poll interval after its last record would take 30 s.
        assert finished.wait(timeout=10), "the drain waited for its poll interval"
    finally:
        worker.stop()
        drained.join()
    assert worker.stats.delivered == 1


def test_not_matched_runs_and_disabled_destinations_queue_nothing(fake_pagerduty):
    enabled = make_destination("on", ROUTING_KEY)
    disabled = make_destination("off", OTHER_ROUTING_KEY, enabled=False)
    detection = make_detection("Logins", enabled, disabled, match_threshold=10)
    _, quiet = record_run(detection, "r-quiet", match_count=3)
    _, loud = record_run(detection, "r-loud", match_count=30)
    _, failed = record_run(detection, "r-error", match_count=0, errors=["index missing"])
    assert quiet == []
    assert [d.destination for d in loud] == [enabled]
    assert [d.destination for d in failed] == [enabled]


def test_400_fails_at_once_with_pagerdutys_errors(paging, fake_pagerduty):
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(
        Fault.status(
            400,
            body={
                "status": "invalid event",
                "message": "Event object is invalid",
                "errors": ["'payload.summary' is missing"],
            },
        )
    )
    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.pagerduty_errors == ["'payload.summary' is missing"]
    assert delivery.pagerduty_message == "Event object is invalid"
    assert delivery.attempts == 1
    assert len(fake_pagerduty.received) == 1


@pytest.mark.parametrize("status", [401, 403, 404, 413])
def test_other_4xx_fail_at_once(paging, fake_pagerduty, status):
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(status))
    drain()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_status_code) == (DeliveryStatus.FAILED, status)


def test_429_with_retry_after_is_due_exactly_then(paging, fake_pagerduty):
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "7"}))
    start = timezone.now()
    drain(at=start)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert delivery.next_attempt_at == start + timedelta(seconds=7)

    drain(at=start + timedelta(seconds=6))
    assert len(fake_pagerduty.received) == 1  # not due yet: nothing sent
    drain(at=start + timedelta(seconds=7))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [a.result for a in delivery.attempt_log.all()] == ["retry", "delivered"]
    assert delivery.attempt_log.first().status_code == 429


def test_429_with_an_http_date_is_honoured(paging, fake_pagerduty):
    from email.utils import format_datetime

    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    later = (timezone.now() + timedelta(seconds=20)).replace(microsecond=0)
    fake_pagerduty.inject(
        Fault.status(429, headers={"Retry-After": format_datetime(later, usegmt=True)})
    )
    drain()
    delivery.refresh_from_db()
    assert abs((delivery.next_attempt_at - later).total_seconds()) < 2


def test_429_without_retry_after_backs_off(paging, fake_pagerduty, settings):
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 4
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(429))
    start = timezone.now()
    drain(at=start)
    delivery.refresh_from_db()
    delay = (delivery.next_attempt_at - start).total_seconds()
    assert 2 <= delay <= 4  # equal jitter: half of the first step fixed, half random


@pytest.mark.parametrize(
    "fault", [Fault.status(500), Fault.status(502), Fault.status(503), Fault.reset(), Fault.drop()]
)
def test_server_errors_and_broken_connections_are_retried_then_delivered(
    paging, fake_pagerduty, fault
):
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(fault, times=2)
    moment = timezone.now()
    for _ in range(3):
        drain(at=moment)
        delivery.refresh_from_db()
        moment = max(moment, delivery.next_attempt_at)
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [a.result for a in delivery.attempt_log.all()] == ["retry", "retry", "delivered"]
    assert len(fake_pagerduty.events) == 1


def test_a_read_timeout_is_retried(fake_pagerduty):
    destination = make_destination("Slow", ROUTING_KEY, timeout_seconds=1)
    detection = make_detection("Logins", destination)
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.delay(1.5))
    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert "no answer within 1 seconds" in delivery.last_error
    drain(at=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED


def test_attempt_limit_fails_the_delivery(paging, fake_pagerduty, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 3
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(503), times=None)
    moment = timezone.now()
    for _ in range(4):
        drain(at=moment)
        delivery.refresh_from_db()
        moment = max(moment, delivery.next_attempt_at)
    assert delivery.status == DeliveryStatus.FAILED
    assert "gave up after 3 attempts" in delivery.last_error
    assert len(fake_pagerduty.received) == 3


def test_age_limit_fails_the_delivery(paging, fake_pagerduty, settings):
    settings.DELIVERY_MAX_AGE_SECONDS = 60
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(503), times=None)
    drain(at=delivery.queued_at + timedelta(seconds=61))
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert "DELIVERY_MAX_AGE_SECONDS" in delivery.last_error


def test_retry_now_restarts_the_limits_and_keeps_the_log(paging, fake_pagerduty, settings):
    from destinations.delivery.outbox import retry_now

    settings.DELIVERY_MAX_ATTEMPTS = 1
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(503))
    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert retry_now([delivery]) == 1
    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [(a.number, a.result) for a in delivery.attempt_log.all()] == [
        (1, "failed"),
        (2, "delivered"),
    ]


def test_budget_holds_per_destination(fake_pagerduty, settings):
    settings.DELIVERY_RATE_BURST = 3
    settings.DELIVERY_RATE_PER_MINUTE = 63  # refills 1 token a second
    busy = make_destination("Busy", ROUTING_KEY)
    calm = make_destination("Calm", OTHER_ROUTING_KEY)
    for n in range(10):
        queue_event(busy, f"busy-{n}")
    queue_event(calm, "calm-0")
    start = timezone.now()
    drain(at=start)
    assert len(fake_pagerduty.received) == 4  # 3 for Busy (its burst), 1 for Calm
    waiting = Delivery.objects.filter(destination=busy, status=DeliveryStatus.PENDING)
    assert waiting.count() == 7
    assert all(d.next_attempt_at > start for d in waiting)
    assert DeliveryAttempt.objects.filter(delivery__in=waiting).count() == 0  # not attempts

    drain(at=start + timedelta(seconds=2))
    assert len(fake_pagerduty.received) == 6  # two more tokens in two seconds


def test_a_bucket_removed_behind_the_workers_back_is_made_again(fake_pagerduty, settings):
    # The worker remembers which destinations have a bucket; one gone all the same (deleted by
    # hand, say) is made again, full, and the budget still holds.
    settings.DELIVERY_RATE_BURST = 3
    destination = make_destination("SecOps", ROUTING_KEY)
    queue_event(destination, "first")
    start = timezone.now()
    drain(at=start)
    RateBudget.objects.filter(destination=destination).delete()
    for n in range(5):
        queue_event(destination, f"again-{n}")
    drain(at=start + timedelta(seconds=1))
    assert len(fake_pagerduty.received) == 4  # the first, then a new bucket's burst of 3
    assert RateBudget.objects.filter(destination=destination).exists()


def test_one_claim_takes_a_due_row_whose_bucket_was_removed(fake_pagerduty):
    # The first look grants nothing (the bucket is gone) and makes the bucket again; the claim
    # looks once more and takes the row, though it found fewer rows than it may take.
    destination = make_destination("SecOps", ROUTING_KEY)
    queue_event(destination, "first")
    drain()
    RateBudget.objects.filter(destination=destination).delete()
    queue_event(destination, "again")
    [claim] = claim_due(limit=8)
    assert claim.delivery.dedup_key == "again"


def test_a_later_event_for_the_same_incident_waits_for_the_earlier(fake_pagerduty):
    destination = make_destination("SecOps", ROUTING_KEY)
    first = queue_event(destination, "incident-1", summary="first")
    second = queue_event(destination, "incident-1", summary="second")
    other = queue_event(destination, "incident-2", summary="other")
    fake_pagerduty.inject(Fault.status(503))
    start = timezone.now()
    drain(at=start, concurrency=1)  # one at a time, so the fault hits "first"
    # The first failed and waits for its retry; the second must not overtake it.
    assert [r.json["payload"]["summary"] for r in fake_pagerduty.received] == ["first", "other"]
    second.refresh_from_db()
    assert second.status == DeliveryStatus.PENDING and second.attempts == 0

    first.refresh_from_db()
    drain(at=first.next_attempt_at, concurrency=1)
    summaries = [r.json["payload"]["summary"] for r in fake_pagerduty.received]
    assert summaries == ["first", "other", "first", "second"]
    assert other.pk


def test_an_expired_lease_is_taken_up_again(paging, fake_pagerduty):
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    start = timezone.now()
    [_] = claim_due(limit=10, now=start)  # a worker that is then killed mid-send
    assert claim_due(limit=10, now=start + timedelta(seconds=5)) == []  # still leased

    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENDING
    drain(at=delivery.lease_expires_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    lost, sent = delivery.attempt_log.all()
    assert (lost.number, lost.error) == (1, LOST_LEASE_ERROR)
    assert (sent.number, sent.result) == (2, "delivered")
    assert len(fake_pagerduty.events) == 1


@pytest.mark.slow  # several worker threads draining a queue
def test_several_workers_send_each_delivery_once(fake_pagerduty):
    destinations = [make_destination(f"D{n}", f"{n:02d}" + ROUTING_KEY[2:]) for n in range(10)]
    for n in range(200):
        queue_event(destinations[n % 10], f"k-{n}")
    fake_pagerduty.latency = 0.005
    workers = [Worker(concurrency=3, poll_interval=0.01) for _ in range(3)]

    def run(worker: Worker) -> None:
        try:
            worker.run(once=True)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(w,)) for w in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    keys = [r.json["dedup_key"] for r in fake_pagerduty.received]
    assert sorted(keys) == sorted(f"k-{n}" for n in range(200))  # each exactly once
    assert Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count() == 200
    assert sum(w.stats.delivered for w in workers) == 200
    if connection.vendor != "postgresql":
        pytest.skip(
            "passed on SQLite (one writer at a time); the SKIP LOCKED claim is exercised "
            "when DATABASE_URL points at PostgreSQL"
        )


def test_a_claim_that_finds_fewer_due_than_it_may_take_looks_once(paging):
    # A worker keeping up finds fewer due rows than it asks for on almost every claim; the
    # claim then selects once, instead of selecting again to find nothing.
    _, detection = paging
    _, [delivery] = record_run(detection, "run-1")
    with CaptureQueriesContext(connection) as queries:
        [claim] = claim_due(limit=8)
    assert claim.delivery.pk == delivery.pk
    selects_of_due_rows = [
        query["sql"]
        for query in queries.captured_queries
        if query["sql"].startswith("SELECT")
        and "ORDER BY" in query["sql"]
        and '"destinations_delivery"."next_attempt_at" ASC' in query["sql"]
    ]
    assert len(selects_of_due_rows) == 1, [query["sql"] for query in queries.captured_queries]
