"""Waking workers: on PostgreSQL a new run's page wakes an idle worker at once (LISTEN/NOTIFY),
and polling delivers when the listening connection is lost; SQLite workers poll."""

import logging
import signal
import threading
import time

import pytest
from django.db import connection, transaction

from destinations.delivery import wakeup
from destinations.delivery.outbox import retry_now
from destinations.delivery.worker import Worker
from destinations.models import Delivery, DeliveryStatus
from tests.support.factories import make_destination, make_detection, record_run
from tests.support.routing_keys import ROUTING_KEY
from tests.support.worker_process import RunningWorker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

on_postgresql = pytest.mark.skipif(
    "connection.vendor != 'postgresql'", reason="LISTEN/NOTIFY is PostgreSQL's"
)
# Far longer than a notified worker takes, so a page within WOKEN_WITHIN came from the wake-up.
LONG_POLL_SECONDS = "5"
WOKEN_WITHIN = 1.0


def listening_backends() -> list[int]:
    """The pids of the sessions whose last statement was the workers' LISTEN."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = %s",
            [f"LISTEN {wakeup.CHANNEL}"],
        )
        return [pid for (pid,) in cursor.fetchall()]


def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


def seconds_to_page(fake_pagerduty, detection, run_id: str, *, timeout: float = 15) -> float:
    """Record a matching run; the seconds until its page reached PagerDuty."""
    before = len(fake_pagerduty.accepted)
    recorded = time.monotonic()
    record_run(detection, run_id)
    wait_until(
        lambda: len(fake_pagerduty.accepted) > before, timeout=timeout, what=f"{run_id}'s page"
    )
    [page] = fake_pagerduty.accepted[before:]
    assert page.json["payload"]["custom_details"]["run_id"] == run_id
    return page.monotonic - recorded


@pytest.fixture
def detection():
    return make_detection("Suspicious Login Attempts", make_destination("SecOps", ROUTING_KEY))


@pytest.mark.postgres
@on_postgresql
def test_a_notification_wakes_an_idle_worker_at_once(fake_pagerduty, detection):
    worker = RunningWorker(
        fake_pagerduty.url, DELIVERY_POLL_INTERVAL_SECONDS=LONG_POLL_SECONDS, LOG_LEVEL="INFO"
    )
    try:
        wait_until(listening_backends, timeout=30, what="the worker to LISTEN")
        time.sleep(0.5)  # past its first claim: idle, waiting out a 5 s poll interval
        seconds = [seconds_to_page(fake_pagerduty, detection, f"run-{n}") for n in range(3)]
    finally:
        output = worker.stop(signal.SIGTERM)
    assert max(seconds) < WOKEN_WITHIN, (seconds, output)
    assert "worker.listening" in output


@pytest.mark.postgres
@pytest.mark.slow  # waits for the worker to listen again
@on_postgresql
def test_listening_resumes_after_its_connection_is_terminated(fake_pagerduty, detection):
    worker = RunningWorker(
        fake_pagerduty.url, DELIVERY_POLL_INTERVAL_SECONDS=LONG_POLL_SECONDS, LOG_LEVEL="INFO"
    )
    try:
        wait_until(listening_backends, timeout=30, what="the worker to LISTEN")
        [first] = listening_backends()
        terminate(first)
        # Whatever is queued while nobody listens is still delivered.
        assert seconds_to_page(fake_pagerduty, detection, "while-away") < 10
        wait_until(
            lambda: listening_backends() not in ([], [first]),
            timeout=30,
            what="the worker to LISTEN again",
        )
        time.sleep(0.5)
        # Listening again: a new run wakes it at once, long before its poll interval is up.
        assert seconds_to_page(fake_pagerduty, detection, "after") < WOKEN_WITHIN
    finally:
        output = worker.stop(signal.SIGTERM)
    assert "worker.listen_lost error=OperationalError" in output
    assert "worker.listening channel=detection_destinations_due (again)" in output
    assert "Worker stopped: delivered 2, retrying 0, failed 0." in output


@pytest.mark.postgres
@on_postgresql
def test_with_the_listening_connection_lost_the_worker_still_polls(
    fake_pagerduty, detection, monkeypatch, caplog
):
    monkeypatch.setattr(wakeup, "RELISTEN_SECONDS", 60)  # it stays away for the whole test
    worker = Worker(concurrency=2, poll_interval=0.2)
    thread = threading.Thread(target=_run_then_close, args=(worker,), daemon=True)
    with caplog.at_level(logging.INFO, logger="destinations.worker"):
        thread.start()
        try:
            wait_until(listening_backends, timeout=30, what="the worker to LISTEN")
            [pid] = listening_backends()
            terminate(pid)
            wait_until(lambda: not worker.listener.listening.is_set(), timeout=10, what="the loss")
            assert seconds_to_page(fake_pagerduty, detection, "polled") < 5
            assert listening_backends() == []  # delivered by polling, nobody listening
        finally:
            worker.stop()
            thread.join(timeout=30)
    assert not thread.is_alive()
    assert "worker.listen_lost error=OperationalError" in caplog.text


def test_on_sqlite_an_idle_worker_polls(fake_pagerduty, detection):
    if connection.vendor == "postgresql":
        pytest.skip("the SQLite path (PostgreSQL's is tested above)")
    worker = Worker(concurrency=2, poll_interval=0.05)
    thread = threading.Thread(target=_run_then_close, args=(worker,), daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        assert seconds_to_page(fake_pagerduty, detection, "polled") < 2
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert worker.listener is None


def test_a_stop_ends_an_idle_wait_at_once(detection):
    worker = Worker(concurrency=1, poll_interval=30)
    thread = threading.Thread(target=_run_then_close, args=(worker,), daemon=True)
    thread.start()
    time.sleep(0.5)  # idle now, in its 30 s wait
    stopped = time.monotonic()
    worker.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()
    assert time.monotonic() - stopped < 1.0


def _run_then_close(worker: Worker) -> None:
    try:
        worker.run()
    finally:
        connection.close()  # this thread's own connection


@pytest.fixture
def notifications():
    """A session listening on the workers' channel; call it for what arrived since the last call."""
    listener = connection.copy()
    listener.ensure_connection()
    listener.connection.execute(f"LISTEN {wakeup.CHANNEL}")

    def arrived() -> int:
        return sum(1 for _ in listener.connection.notifies(timeout=0.5))

    yield arrived
    listener.close()


@pytest.mark.postgres
@on_postgresql
def test_retry_now_and_a_run_wake_the_workers_and_a_rollback_does_not(notifications, detection):
    _, [page] = record_run(detection, "run-1")
    assert notifications() == 1
    Delivery.objects.filter(pk=page.pk).update(status=DeliveryStatus.FAILED)
    assert notifications() == 0  # nothing due
    assert retry_now([page]) == 1
    assert notifications() == 1
    with pytest.raises(RuntimeError), transaction.atomic():
        record_run(detection, "run-2")
        raise RuntimeError("rolled back")
    assert notifications() == 0


@pytest.mark.postgres
@on_postgresql
def test_with_listening_turned_off_a_worker_on_postgresql_polls(
    fake_pagerduty, detection, settings
):
    settings.DELIVERY_LISTEN = False  # behind a pooler in transaction mode
    worker = Worker(concurrency=2, poll_interval=0.05)
    thread = threading.Thread(target=_run_then_close, args=(worker,), daemon=True)
    thread.start()
    try:
        time.sleep(0.2)
        assert listening_backends() == []
        assert seconds_to_page(fake_pagerduty, detection, "polled") < 2
    finally:
        worker.stop()
        thread.join(timeout=30)
    assert worker.listener is None
