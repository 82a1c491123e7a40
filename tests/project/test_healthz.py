"""GET /healthz as a load balancer or an operator's monitor meets it."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db.backends.utils import CursorWrapper
from django.utils import timezone

from destinations.models import Delivery, DeliveryKind, DeliveryStatus

pytestmark = pytest.mark.django_db


def queue(destination, status: str, *, age: timedelta = timedelta(0), **fields) -> Delivery:
    moment = timezone.now() - age
    return Delivery.objects.create(
        destination=destination,
        kind=DeliveryKind.TRIGGER,
        event={"event_action": "trigger"},
        dedup_key="k",
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
