"""`manage.py deliver_alerts` as an operator runs it."""

import signal
import sys
import time

import pytest
from django.core.management import CommandError, call_command

from destinations.management.commands.deliver_alerts import SWITCH_INTERVAL_SECONDS
from destinations.models import Delivery, DeliveryStatus
from tests.support.factories import make_destination, queue_event
from tests.support.routing_keys import ROUTING_KEY
from tests.support.worker_process import start_worker

pytestmark = pytest.mark.django_db(transaction=True)


def test_once_drains_what_is_due_and_reports(fake_pagerduty, capsys):
    destination = make_destination("SecOps", ROUTING_KEY)
    for n in range(5):
        queue_event(destination, f"k-{n}")
    call_command("deliver_alerts", "--once", "--concurrency", "3")
    assert "Worker stopped: delivered 5, retrying 0, failed 0." in capsys.readouterr().out
    assert len(fake_pagerduty.events) == 5


@pytest.fixture
def switch_interval():
    """Python's own switch interval for the test; the one before is put back after it."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield 0.005
    sys.setswitchinterval(before)


def test_the_worker_process_hands_the_interpreter_over_sooner(fake_pagerduty, switch_interval):
    # The command runs as the worker's own process, and shortens the turns its threads take.
    call_command("deliver_alerts", "--once")
    assert sys.getswitchinterval() == pytest.approx(SWITCH_INTERVAL_SECONDS)
    assert switch_interval > SWITCH_INTERVAL_SECONDS


@pytest.mark.parametrize("value", ["0", "65"])
def test_concurrency_out_of_range_is_refused(value):
    with pytest.raises(CommandError, match="--concurrency must be between 1 and 64"):
        call_command("deliver_alerts", "--once", "--concurrency", value)


@pytest.mark.slow
def test_sigterm_finishes_the_delivery_in_flight_then_exits(fake_pagerduty):
    destination = make_destination("SecOps", ROUTING_KEY)
    delivery = queue_event(destination, "k-1")
    fake_pagerduty.latency = 1.5
    worker = start_worker(events_url=fake_pagerduty.url)
    try:
        deadline = time.monotonic() + 30
        while not fake_pagerduty.received and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fake_pagerduty.received, "the worker never sent"
        worker.send_signal(signal.SIGTERM)  # while PagerDuty is still answering
        out, err = worker.communicate(timeout=30)
    finally:
        worker.kill()
    assert worker.returncode == 0, err
    assert "finishing the deliveries in flight" in err
    assert "delivered 1" in out
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert Delivery.objects.filter(status=DeliveryStatus.SENDING).count() == 0


def test_the_worker_checks_the_encryption_keys_before_it_starts(db, settings):
    # The worker runs only the checks it needs (models, encryption keys), not the URL config's.
    from django.core.management.base import SystemCheckError

    settings.FIELD_ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(SystemCheckError, match=r"destinations\.E001"):
        call_command("deliver_alerts", "--once", skip_checks=False)
