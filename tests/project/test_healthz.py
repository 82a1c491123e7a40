"""GET /healthz as a load balancer or an operator's monitor meets it."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from destinations.models import Delivery, DeliveryKind, DeliveryStatus

pytestmark = pytest.mark.django_db


def queue(
    destination,
    status: str,
    *,
    age: timedelta = timedelta(0),
    kind: str = DeliveryKind.TRIGGER,
    dedup_key: str = "k",
    **fields,
) -> Delivery:
    moment = timezone.now() - age
    return Delivery.objects.create(
        destination=destination,
        kind=kind,
        event={"event_action": "trigger" if kind != DeliveryKind.RESOLVE else "resolve"},
        dedup_key=dedup_key,
        status=status,
        queued_at=moment,
        created_at=moment,
        **fields,
    )


def test_healthz_with_an_empty_queue(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "database": "ok",
        "pending": 0,
        "oldest_pending_age_seconds": None,
        "failed_last_24h": 0,
        "tests": {"pending": 0, "oldest_pending_age_seconds": None, "failed_last_24h": 0},
    }
    assert "no-cache" in response["Cache-Control"]


def test_healthz_counts_the_queue_and_ages_its_oldest_delivery(client, destination):
    queue(destination, DeliveryStatus.PENDING, age=timedelta(seconds=120))
    queue(destination, DeliveryStatus.SENDING, age=timedelta(seconds=30))
    queue(destination, DeliveryStatus.DELIVERED, age=timedelta(hours=1))
    now = timezone.now()
    queue(destination, DeliveryStatus.FAILED, finished_at=now - timedelta(hours=2))
    queue(destination, DeliveryStatus.FAILED, finished_at=now - timedelta(hours=30))

    answer = client.get("/healthz").json()

    assert (answer["status"], answer["pending"], answer["failed_last_24h"]) == ("ok", 2, 1)
    assert 120 <= answer["oldest_pending_age_seconds"] < 130


def test_healthz_counts_pages_and_tests_apart(client, destination):
    # A test alert that failed and was re-queued by Retry now, and a delivered test's resolve
    # waiting to be sent: neither is a page, so neither makes the queue look unhealthy.
    now = timezone.now()
    test_key = "test-" + "c" * 32
    queue(
        destination,
        DeliveryStatus.PENDING,
        age=timedelta(minutes=10),
        kind=DeliveryKind.TEST,
        finished_at=now - timedelta(minutes=11),
    )
    queue(
        destination,
        DeliveryStatus.PENDING,
        age=timedelta(minutes=5),
        kind=DeliveryKind.RESOLVE,
        dedup_key=test_key,
    )
    queue(destination, DeliveryStatus.FAILED, kind=DeliveryKind.TEST, finished_at=now)
    # One real page, queued a minute ago.
    queue(destination, DeliveryStatus.PENDING, age=timedelta(minutes=1))

    answer = client.get("/healthz").json()

    pages = Delivery.objects.exclude(kind=DeliveryKind.TEST).exclude(dedup_key=test_key)
    assert answer["pending"] == pages.filter(status="pending").count() == 1
    assert 60 <= answer["oldest_pending_age_seconds"] < 70
    assert answer["failed_last_24h"] == 0
    tests = answer["tests"]
    # Pending: the re-queued test and the resolve; failing: the re-queued test and the failed one.
    assert (tests["pending"], tests["failed_last_24h"]) == (2, 2)
    assert 600 <= tests["oldest_pending_age_seconds"] < 610


def test_healthz_needs_no_login_and_is_not_redirected_to_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    assert client.get("/admin/").status_code == 301  # the rest of the site is redirected


def test_healthz_is_503_when_the_database_fails(client, monkeypatch):
    def unreachable(*args, **kwargs):
        raise OperationalError('connection to server at "db.internal" failed: password for "ops"')

    monkeypatch.setattr(CursorWrapper, "execute", unreachable)

    response = client.get("/healthz")

    assert response.status_code == 503
    assert response.json() == {"status": "error", "database": "unreachable (OperationalError)"}
    assert b"db.internal" not in response.content


def test_healthz_only_answers_reads(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert client.head("/healthz").status_code == 200
