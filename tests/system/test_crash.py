"""A real `deliver_alerts` process killed with SIGKILL again and again loses no page."""

# Delivery is at least once: a request that was on the wire when the worker died is sent again
# after its lease expires, and PagerDuty folds the repeat into the same incident by its dedup key.
# The test proves both halves: every delivery ends delivered, and every repeat belongs to a row
# the killed worker was holding.

import random
import signal
import time
from collections import Counter

import pytest

from destinations.delivery.claims import LOST_LEASE_ERROR
from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus
from tests.support.factories import make_destination, queue_event
from tests.support.leak_guard import find_secrets, register_secret
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY
from tests.support.worker_process import RunningWorker, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DELIVERIES = 300
CONCURRENCY = 8
KILLS = 4
# PagerDuty answering slowly keeps several requests on the wire at every kill.
LATENCY_SECONDS = 0.25
KEYS = [ROUTING_KEY, OTHER_ROUTING_KEY, "Hb4Nc6Vd8Xf0Zg2Lh4Jk6Pm8Qn0Rs2Tu"]
WORKER_ARGS = ("--concurrency", str(CONCURRENCY))
WORKER_ENV = {
    # Leases of 1 s (the destinations' timeout) + 2 s: a killed worker's rows are free soon.
    "DELIVERY_LEASE_MARGIN_SECONDS": "2",
    # The budget has its own tests; here it would only stretch the drain out.
    "DELIVERY_RATE_PER_MINUTE": "1000000",
    "DELIVERY_RATE_BURST": "100000",
    # Everything the worker can log, so the leak check below reads all of it.
    "LOG_LEVEL": "DEBUG",
}


def delivered() -> int:
    return Delivery.objects.filter(status=DeliveryStatus.DELIVERED).count()


def test_a_worker_killed_mid_drain_again_and_again_delivers_everything(fake_pagerduty):
    for key in KEYS:
        register_secret(key)
    targets = [
        make_destination(f"On-call {n}", key, timeout_seconds=1) for n, key in enumerate(KEYS)
    ]
    for n in range(DELIVERIES):
        queue_event(targets[n % len(targets)], f"incident-{n}", summary=f"n{n}")
    fake_pagerduty.latency = LATENCY_SECONDS
    rng = random.Random(8)
    held_at_kill: list[set[str]] = []
    on_the_wire_at_kill: list[int] = []
    output: list[str] = []
    worker = None
    try:
        for _ in range(KILLS):
            worker = RunningWorker(fake_pagerduty.url, *WORKER_ARGS, **WORKER_ENV)
            sent_before = len(fake_pagerduty.received)
            wait_until(
                lambda before=sent_before: len(fake_pagerduty.received) >= before + CONCURRENCY,
                timeout=30,
                what="the restarted worker to send",
            )
            time.sleep(rng.uniform(0.1, 1.0))  # a random moment in the middle of the drain
            on_the_wire_at_kill.append(sum(1 for r in fake_pagerduty.received if r.status is None))
            output.append(worker.stop(signal.SIGKILL))
            # What the dead worker held: claimed and maybe sent, never recorded.
            held_at_kill.append(
                set(
                    Delivery.objects.filter(status=DeliveryStatus.SENDING).values_list(
                        "dedup_key", flat=True
                    )
                )
            )
            assert delivered() < DELIVERIES, "the drain ended before this kill"
        worker = RunningWorker(fake_pagerduty.url, *WORKER_ARGS, **WORKER_ENV)
        wait_until(lambda: delivered() == DELIVERIES, timeout=90, what="every delivery")
        output.append(worker.stop(signal.SIGTERM))
    finally:
        if worker is not None:
            worker.stop(signal.SIGKILL)

    assert worker.process.returncode == 0
    assert Counter(Delivery.objects.values_list("status", flat=True)) == {"delivered": DELIVERIES}
    sent = Counter(record.json["dedup_key"] for record in fake_pagerduty.received)
    accepted = {record.json["dedup_key"] for record in fake_pagerduty.accepted}
    assert accepted == {f"incident-{n}" for n in range(DELIVERIES)}

    # At least once, and a repeat only for a row a killed worker held.
    repeated = {key for key, count in sent.items() if count > 1}
    extra_sends = sum(sent.values()) - DELIVERIES
    every_held = set().union(*held_at_kill)
    assert all(held for held in held_at_kill), "a kill found nothing in flight"
    assert repeated <= every_held
    assert extra_sends <= sum(len(held) for held in held_at_kill)
    # A worker holds at most two batches of claims (2 × --concurrency): one sending, one queued
    # or sent and waiting to be recorded. Only those can be sent again after a kill.
    assert extra_sends <= 2 * CONCURRENCY * KILLS
    # Each row a dead worker held was taken up again once its lease expired, and logged.
    lost = DeliveryAttempt.objects.filter(error=LOST_LEASE_ERROR)
    assert set(lost.values_list("delivery__dedup_key", flat=True)) == every_held
    # What the workers wrote (DEBUG logs included) never holds a routing key.
    assert find_secrets("".join(output), set(KEYS)) == []
    print(
        f"\n{KILLS} SIGKILLs survived: {DELIVERIES} delivered; {extra_sends} repeated sends "
        f"(bound {sum(len(h) for h in held_at_kill)} held, {2 * CONCURRENCY * KILLS} by claims); "
        f"on the wire at each kill {on_the_wire_at_kill}"
    )
