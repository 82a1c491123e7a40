"""Building detections, runs and queued deliveries for the delivery tests."""

from datetime import UTC, datetime, timedelta

from django.db import transaction

from destinations.delivery.outbox import enqueue_run_deliveries
from destinations.models import Delivery, DeliveryKind, Destination
from detections.models import Detection, DetectionRun
from detections.outcomes import evaluate_outcome

RAN_AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


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
