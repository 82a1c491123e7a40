"""The suite's builders: destinations, detections, runs, API posts, queued and drained work."""

import json
import random
from datetime import UTC, datetime, time, timedelta

from django.db import transaction
from django.test import Client
from django.utils import timezone

from destinations.delivery.outbox import enqueue_run_deliveries
from destinations.delivery.worker import Worker
from destinations.models import Delivery, DeliveryAttempt, DeliveryKind, DeliveryStatus, Destination
from detections.models import Detection, DetectionRun
from detections.outcomes import evaluate_outcome

RAN_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
RUNS_URL = "/api/v1/detection-runs"
DETECTION_NAME = "Suspicious Login Attempts"


def make_destination(name: str, key: str, **fields) -> Destination:
    destination = Destination(name=name, **fields)
    destination.set_routing_key(key)
    destination.save()
    return destination


def make_detection(name: str, *destinations: Destination, **fields) -> Detection:
    fields.setdefault("severity", "HIGH")
    fields.setdefault("match_operator", "GREATER_THAN")
    fields.setdefault("match_threshold", 0)
    detection = Detection.objects.create(name=name, **fields)
    detection.destinations.set(destinations)
    return detection


def record_run(detection: Detection, run_id: str, *, match_count: int = 5, errors=(), **fields):
    """Store a run and queue its deliveries in one transaction, as the intake does."""
    outcome = evaluate_outcome(
        match_operator=detection.match_operator,
        match_threshold=detection.match_threshold,
        match_count=match_count,
        errors=list(errors),
    )
    with transaction.atomic():
        run = DetectionRun.objects.create(
            detection=detection,
            run_id=run_id,
            run_type="SCHEDULED",
            outcome=outcome,
            match_count=match_count,
            ran_at=fields.pop("ran_at", RAN_AT),
            range_start=RAN_AT - timedelta(hours=1),
            range_end=RAN_AT,
            errors=list(errors),
            **fields,
        )
        return run, enqueue_run_deliveries(run)


def queue_event(destination: Destination, dedup_key: str, *, summary: str = "queued") -> Delivery:
    """Queue a bare trigger with its own dedup key (for budget and order tests)."""
    event = {
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {"summary": summary, "severity": "info", "source": "tests"},
    }
    return Delivery.objects.create(
        destination=destination, kind=DeliveryKind.TRIGGER, event=event, dedup_key=dedup_key
    )


def drain(at=None, concurrency: int = 2):
    """Run the worker once, as `deliver_alerts --once` would, at a given moment."""
    clock = (lambda: at) if at else timezone.now
    return Worker(concurrency=concurrency, poll_interval=0.01, now=clock).run(once=True)


def run_body(**fields) -> dict:
    """A valid body for POST /api/v1/detection-runs, with `fields` changed; `...` leaves one out."""
    body = {
        "detection_name": DETECTION_NAME,
        "run_id": "run-1",
        "run_type": "SCHEDULED",
        "match_count": 5,
        "ran_at": "2026-05-01T12:00:00Z",
        "range_start": "2026-05-01T11:00:00+00:00",
        "range_end": "2026-05-01T14:00:00+02:00",
    }
    body.update(fields)
    return {name: value for name, value in body.items() if value is not ...}


def post_run(client: Client, body, token: str | None, *, content_type="application/json", **extra):
    """POST a run (a dict as JSON, or text and bytes as they are) with the token as Bearer."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    if token is not None:
        extra.setdefault("headers", {})["Authorization"] = f"Bearer {token}"
    return client.post(RUNS_URL, data=data, content_type=content_type, **extra)


def stored_counts() -> tuple[int, int]:
    """How many runs and deliveries are stored."""
    return DetectionRun.objects.count(), Delivery.objects.count()


def stored_delivery(
    destination, *, status, created_at, latency_ms=None, kind=DeliveryKind.TRIGGER, **fields
):
    """Store one delivery as the worker would have left it."""
    if status == DeliveryStatus.DELIVERED:
        fields.setdefault("delivered_at", created_at + timedelta(milliseconds=latency_ms or 250))
        fields.setdefault("finished_at", fields["delivered_at"])
    if status == DeliveryStatus.FAILED:
        fields.setdefault("finished_at", created_at + timedelta(seconds=1))
    return Delivery.objects.create(
        destination=destination,
        kind=kind,
        event={"event_action": "trigger"},
        dedup_key=fields.pop("dedup_key", f"key-{random.random()}"),
        status=status,
        created_at=created_at,
        queued_at=fields.pop("queued_at", created_at),
        **fields,
    )


def with_attempt(delivery: Delivery) -> Delivery:
    """Log one attempt of a stored delivery, as the worker would have."""
    delivered = delivery.status == DeliveryStatus.DELIVERED
    DeliveryAttempt.objects.create(
        delivery=delivery,
        number=1,
        started_at=delivery.created_at,
        status_code=202 if delivered else 400,
        result=DeliveryAttempt.Result.DELIVERED if delivered else DeliveryAttempt.Result.FAILED,
    )
    return delivery


def days_ago(days: int, at: time = time(12, 0)) -> datetime:
    """A moment on a past local day, so a test never depends on the hour it runs at."""
    day = timezone.localdate() - timedelta(days=days)
    return datetime.combine(day, at, tzinfo=timezone.get_current_timezone())
