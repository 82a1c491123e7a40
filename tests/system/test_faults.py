"""The fault matrix: PagerDuty misbehaves for a while, then recovers, and no page is lost."""

# Each episode queues deliveries over several destinations, makes the fake PagerDuty answer a
# large share of requests with one fault until the fault clears, and drives the worker with an
# injected clock that steps to the next due moment, so no test waits out a real backoff.

import html
import socket
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import pytest
from django.db.models import Max, Min
from django.urls import reverse
from django.utils import timezone

from destinations.delivery.worker import Worker
from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus
from tests.support.factories import make_destination, queue_event
from tests.support.fake_pagerduty import Fault
from tests.support.leak_guard import register_secret
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

EXTRA_KEYS = ["Mn3Bv5Cx7Zl9Kj2Hg4Fd6Sa8Qw1Er0Ty", "Pq1Ow2Ie3Ur4Yt5Lk6Jh7Gf8Ds9Aa0Zx"]
DELIVERIES = 100
# The fault hits each request with this probability until it has hit FAULTED_REQUESTS of them:
# about 70% of the traffic fails for the first ~210 requests, then PagerDuty recovers.
FAULT_PROBABILITY = 0.7
FAULTED_REQUESTS = 150
# Retries due within this much of the earliest are sent in the same drain (backoff spreads them
# over the jitter range; one drain per retry would only slow the test down).
DRAIN_WINDOW = timedelta(seconds=0.5)
RETRY_AFTER_SECONDS = 3
# An episode settles in a few rounds of retries; far more drains than that means it never would.
MAX_DRAINS = 400

RETRYABLE_FAULTS = {
    "429 with Retry-After": Fault.status(429, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}),
    "429 without Retry-After": Fault.status(429),
    "500": Fault.status(500),
    "502": Fault.status(502),
    "503": Fault.status(503),
    "connection reset": Fault.reset(),
}


@pytest.fixture(autouse=True)
def unlimited_budget(settings):
    """Lift the per-destination budget, so every retry is sent the moment it falls due."""
    # The budget has its own tests; here it would only defer retries past their due moment.
    settings.DELIVERY_RATE_BURST = 100_000
    settings.DELIVERY_RATE_PER_MINUTE = 1_000_000.0


def destinations(count: int = 4, **fields):
    keys = [ROUTING_KEY, OTHER_ROUTING_KEY, *EXTRA_KEYS][:count]
    for key in keys:
        register_secret(key)
    return [make_destination(f"On-call {n}", key, **fields) for n, key in enumerate(keys)]


def queue_spread(count: int, targets) -> dict[str, Delivery]:
    """Queue `count` deliveries round-robin over the destinations, each its own incident."""
    return {
        f"incident-{n}": queue_event(targets[n % len(targets)], f"incident-{n}", summary=f"n{n}")
        for n in range(count)
    }


class Episode:
    """Runs the worker at injected moments, noting when each delivery was tried and rescheduled."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or timezone.now()
        self.drains = 0
        self.tried_at: dict[int, list[datetime]] = defaultdict(list)
        self.delays: dict[int, list[tuple[int, float]]] = defaultdict(list)

    def drain(self, concurrency: int = 8) -> None:
        before = dict(Delivery.objects.values_list("pk", "total_attempts"))
        moment = self.moment
        Worker(concurrency=concurrency, poll_interval=0.01, now=lambda: moment).run(once=True)
        self.drains += 1
        for row in Delivery.objects.values(
            "pk", "total_attempts", "attempts", "status", "next_attempt_at"
        ):
            if row["total_attempts"] > before[row["pk"]]:
                self.tried_at[row["pk"]].append(moment)
                if row["status"] == DeliveryStatus.PENDING:
                    delay = (row["next_attempt_at"] - moment).total_seconds()
                    self.delays[row["pk"]].append((row["attempts"], delay))

    def next_due(self) -> datetime | None:
        pending = Delivery.objects.filter(status=DeliveryStatus.PENDING).aggregate(
            due=Min("next_attempt_at")
        )["due"]
        leased = Delivery.objects.filter(status=DeliveryStatus.SENDING).aggregate(
            due=Min("lease_expires_at")
        )["due"]
        return min((m for m in (pending, leased) if m is not None), default=None)

    def run_until_settled(self, *, concurrency: int = 8, window: timedelta = DRAIN_WINDOW) -> None:
        """Drain, step the clock to the next due moment, repeat until nothing is unfinished."""
        for _ in range(MAX_DRAINS):
            self.drain(concurrency)
            due = self.next_due()
            if due is None:
                return
            self.moment = max(self.moment, due + window)
        pytest.fail(f"deliveries still unfinished after {MAX_DRAINS} drains")


def requests_by_key(fake) -> dict[str, list]:
    by_key = defaultdict(list)
    for record in fake.received:
        by_key[record.json["dedup_key"]].append(record)
    return by_key


def backoff_bounds(attempts: int, settings) -> tuple[float, float]:
    """The delay the policy allows after the n-th failed attempt: half the step to the step."""
    step = min(
        settings.DELIVERY_BACKOFF_MAX_SECONDS,
        settings.DELIVERY_BACKOFF_BASE_SECONDS * 2 ** (attempts - 1),
    )
    return step / 2, step


def assert_all_delivered_once_the_fault_cleared(queued: dict[str, Delivery], fake) -> Counter:
    """Every delivery delivered, each incident accepted by PagerDuty, attempts = faults + 1."""
    statuses = Counter(Delivery.objects.values_list("status", flat=True))
    assert statuses == {DeliveryStatus.DELIVERED: len(queued)}
    accepted = Counter(event["dedup_key"] for event in fake.events)
    assert set(accepted) == set(queued), "an incident never reached PagerDuty"
    sent = requests_by_key(fake)
    faulted: Counter = Counter()
    for key, delivery in queued.items():
        records = sent[key]
        faulted[key] = sum(1 for record in records if record.fault is not None)
        delivery.refresh_from_db()
        log = list(delivery.attempt_log.order_by("number"))
        assert delivery.attempts == delivery.total_attempts == len(records) == faulted[key] + 1
        assert [a.number for a in log] == list(range(1, len(records) + 1))
        assert [a.result for a in log] == ["retry"] * faulted[key] + ["delivered"]
        assert records[-1].fault is None and records[-1].accepted
    return faulted


@pytest.mark.parametrize("name", RETRYABLE_FAULTS)
def test_an_episode_of_faults_ends_with_every_delivery_delivered(fake_pagerduty, settings, name):
    queued = queue_spread(DELIVERIES, destinations())
    fake_pagerduty.inject(
        RETRYABLE_FAULTS[name], times=FAULTED_REQUESTS, probability=FAULT_PROBABILITY, seed=1
    )
    exact = name == "429 with Retry-After"
    episode = Episode()
    # Retry-After moments are stepped to exactly, to see each retry sent at that very moment.
    episode.run_until_settled(window=timedelta(0) if exact else DRAIN_WINDOW)

    faulted = assert_all_delivered_once_the_fault_cleared(queued, fake_pagerduty)
    assert sum(faulted.values()) == FAULTED_REQUESTS
    assert max(faulted.values()) >= 3  # some deliveries met the fault again and again
    for delivery in queued.values():
        delays = episode.delays[delivery.pk]
        assert len(delays) == faulted[delivery.dedup_key]
        tried = episode.tried_at[delivery.pk]
        for (attempts, delay), moment, retried in zip(delays, tried, tried[1:], strict=False):
            if exact:
                # Due exactly when PagerDuty said, and tried at that very moment, not later.
                assert delay == RETRY_AFTER_SECONDS
                assert retried - moment == timedelta(seconds=RETRY_AFTER_SECONDS)
            else:
                low, high = backoff_bounds(attempts, settings)
                assert low <= delay <= high, (attempts, delay)
                # Never before it was due; at most one drain window after.
                waited = retried - moment
                assert timedelta(seconds=delay) <= waited <= timedelta(seconds=delay) + DRAIN_WINDOW
    print(
        f"\n{name}: {FAULTED_REQUESTS} faulted requests over {DELIVERIES} deliveries survived "
        f"in {episode.drains} drains; at most {max(faulted.values())} faults for one delivery"
    )


def test_read_timeouts_are_retried_until_delivered(fake_pagerduty):
    # Each timeout costs a real second, so this episode is smaller.
    queued = queue_spread(16, destinations(2, timeout_seconds=1))
    fake_pagerduty.inject(Fault.delay(1.5), times=12, probability=FAULT_PROBABILITY, seed=1)
    Episode().run_until_settled(concurrency=16)

    faulted = assert_all_delivered_once_the_fault_cleared(queued, fake_pagerduty)
    assert sum(faulted.values()) == 12
    timed_out = DeliveryAttempt.objects.filter(result="retry")
    assert timed_out.count() == 12
    assert all("no answer within 1 seconds" in a.error for a in timed_out)


def test_connection_refused_until_pagerduty_is_back(fake_pagerduty):
    queued = queue_spread(40, destinations())
    fake_pagerduty.stop()  # nothing listens on its port now
    episode = Episode()
    for _ in range(3):
        episode.drain()
        episode.moment = Delivery.objects.aggregate(last=Max("next_attempt_at"))["last"]
    refused = DeliveryAttempt.objects.filter(result="retry")
    assert refused.count() == 3 * 40
    assert all("connection refused" in a.error for a in refused)
    assert Delivery.objects.filter(status=DeliveryStatus.PENDING).count() == 40

    fake_pagerduty.start()  # the same port again
    episode.run_until_settled()
    assert Counter(Delivery.objects.values_list("status", flat=True)) == {"delivered": 40}
    assert sorted(r.json["dedup_key"] for r in fake_pagerduty.received) == sorted(queued)
    for delivery in queued.values():
        delivery.refresh_from_db()
        assert delivery.attempts == 4
        assert [a.result for a in delivery.attempt_log.order_by("number")] == [
            "retry",
            "retry",
            "retry",
            "delivered",
        ]


def trickling_pagerduty(byte_interval: float) -> str:
    """A PagerDuty that reads one request, then drips out a 202 one byte per interval."""
    body = b'{"status":"success","message":"Event processed","dedup_key":"k"}'
    answer = (
        b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body)
    )
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with server:
            connection, _ = server.accept()
            with connection:
                connection.recv(65536)
                for byte in answer:
                    time.sleep(byte_interval)
                    try:
                        connection.sendall(bytes([byte]))
                    except OSError:
                        return  # the client gave up, as it should

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/v2/enqueue"


def test_an_answer_trickling_in_slower_than_the_timeout_is_a_timeout(settings):
    # Each byte comes within the 1 s read timeout, so only a deadline on the whole answer
    # stops the wait (the status line alone would take 12 s).
    settings.PAGERDUTY_EVENTS_URL = trickling_pagerduty(byte_interval=0.5)
    [destination] = destinations(1, timeout_seconds=1)
    delivery = queue_event(destination, "incident-slow")
    started = time.monotonic()

    Episode().drain(concurrency=1)

    delivery.refresh_from_db()
    assert time.monotonic() - started < 2.5  # the destination's 1 s, and some slack
    assert delivery.status == DeliveryStatus.PENDING
    assert "no answer within 1 seconds" in delivery.last_error


def test_a_2xx_with_a_malformed_body_counts_as_delivered(fake_pagerduty):
    queued = queue_spread(DELIVERIES, destinations())
    fake_pagerduty.inject(
        Fault.malformed_success(), times=FAULTED_REQUESTS, probability=FAULT_PROBABILITY, seed=1
    )
    Episode().run_until_settled()

    # PagerDuty queued the event (202); an unreadable body does not make it send twice.
    assert Counter(Delivery.objects.values_list("status", flat=True)) == {"delivered": DELIVERIES}
    assert sorted(r.json["dedup_key"] for r in fake_pagerduty.received) == sorted(queued)
    malformed = [r for r in fake_pagerduty.received if r.fault is not None]
    assert len(malformed) > DELIVERIES // 2  # most of them
    for record in malformed:
        delivery = queued[record.json["dedup_key"]]
        delivery.refresh_from_db()
        assert (delivery.attempts, delivery.last_status_code) == (1, 202)
        assert delivery.pagerduty_dedup_key == ""


def test_a_400_amid_traffic_fails_at_once_and_keeps_pagerdutys_errors(fake_pagerduty):
    good, refused = destinations(2)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, 400)
    fake_pagerduty.inject(Fault.status(503), times=20, probability=FAULT_PROBABILITY, seed=1)
    queued = queue_spread(40, [good, refused])
    Episode().run_until_settled()

    for delivery in Delivery.objects.filter(destination=refused):
        assert delivery.status == DeliveryStatus.FAILED
        answered = delivery.attempt_log.get(result="failed")
        assert answered.status_code == 400
        # Only 503s before it: a 400 is never retried.
        assert delivery.attempt_log.exclude(pk=answered.pk).filter(status_code=400).count() == 0
        assert delivery.pagerduty_errors == ["Invalid routing key"]
        assert delivery.pagerduty_message == "Event object is invalid"
        assert "PagerDuty answered 400" in delivery.last_error
    assert not Delivery.objects.filter(destination=good).exclude(status="delivered").exists()
    refused_sent = Counter(r.json["dedup_key"] for r in fake_pagerduty.received if r.status == 400)
    assert set(refused_sent.values()) == {1}
    assert len(refused_sent) == len(queued) // 2


def test_an_outage_longer_than_the_age_limit_fails_visibly_and_retry_now_delivers(
    fake_pagerduty, settings, admin_client
):
    settings.DELIVERY_MAX_AGE_SECONDS = 600
    queued = queue_spread(6, destinations(2))
    fake_pagerduty.inject(Fault.status(503), times=None)  # down for as long as it takes
    episode = Episode()
    episode.run_until_settled()

    assert episode.moment - min(d.queued_at for d in queued.values()) >= timedelta(seconds=600)
    failed = Delivery.objects.filter(status=DeliveryStatus.FAILED)
    assert failed.count() == 6
    assert all("DELIVERY_MAX_AGE_SECONDS" in d.last_error for d in failed)
    assert fake_pagerduty.events == []

    log = html.unescape(
        admin_client.get(
            reverse("admin:destinations_delivery_changelist"), {"status__exact": "failed"}
        ).content.decode()
    )
    assert log.count("delivery-status delivery-failed") == 6
    assert "DELIVERY_MAX_AGE_SECONDS" in log
    health = admin_client.get("/healthz").json()
    assert (health["pending"], health["failed_last_24h"]) == (0, 6)
    page = html.unescape(admin_client.get("/admin/destinations/health/").content.decode())
    assert '<li id="health-failed-recently"><strong>6</strong> pages failed' in page
    assert "DELIVERY_MAX_AGE_SECONDS" in page  # the last failure's reason, per destination

    fake_pagerduty.clear_faults()  # PagerDuty is back
    answer = admin_client.post(
        reverse("admin:destinations_delivery_changelist"),
        {"action": "retry_now_action", "_selected_action": [d.pk for d in failed]},
        follow=True,
    )
    assert "6 failed deliveries are due again now" in answer.content.decode()
    assert admin_client.get("/healthz").json()["pending"] == 6
    Episode().run_until_settled()

    assert Counter(Delivery.objects.values_list("status", flat=True)) == {"delivered": 6}
    assert sorted(e["dedup_key"] for e in fake_pagerduty.events) == sorted(queued)
    for delivery in queued.values():
        delivery.refresh_from_db()
        results = list(delivery.attempt_log.order_by("number").values_list("result", flat=True))
        assert results[-1] == "delivered" and results[-2] == "failed"  # the old log is kept
        assert delivery.attempts == 1
