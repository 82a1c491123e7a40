"""The outbox: queue a run's events for its destinations, and make failed deliveries due again."""

from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from detections.events import run_facts
from detections.models import Outcome
from project import PRODUCT_NAME

if TYPE_CHECKING:
    from .attempts import FinishedAttempt

from ..models import Delivery, DeliveryKind, DeliveryStatus, Destination
from ..pagerduty.events import (
    PAGEABLE_OUTCOMES,
    DestinationOptions,
    build_resolve_event,
    build_trigger_event,
)
from .resolves import queue_auto_resolves
from .routing import destinations_to_page


def destination_options(destination: Destination) -> DestinationOptions:
    """The parts of a destination that shape its events."""
    return DestinationOptions(
        severity_override=destination.severity_override,
        component=destination.component,
        group=destination.group,
        event_class=destination.event_class,
        custom_details=dict(destination.custom_details or {}),
    )


def build_run_event(run, destination: Destination) -> dict:
    """The trigger event (without the routing key) for a run and a destination."""
    return build_trigger_event(
        run=run_facts(run),
        options=destination_options(destination),
        default_source=settings.PAGERDUTY_DEFAULT_SOURCE,
        client=PRODUCT_NAME,
        client_url=settings.SITE_URL,
    )


def enqueue_run_deliveries(run) -> list[Delivery]:
    """Queue a MATCHED or ERROR run's triggers, or a NOT_MATCHED run's auto-resolves.

    Call it inside the transaction that stores the run, so both are written or neither is. A
    disabled detection pages nobody and resolves nothing.
    """
    if not run.detection.enabled:
        return []
    now = timezone.now()
    if run.outcome in PAGEABLE_OUTCOMES:
        deliveries = [
            _trigger(run, destination, now=now)
            for destination in destinations_to_page(run.detection)
        ]
    elif run.outcome == Outcome.NOT_MATCHED:
        deliveries = queue_auto_resolves(run, now=now)
    else:
        return []
    return Delivery.objects.bulk_create(deliveries) if deliveries else []


def _trigger(run, destination: Destination, *, now) -> Delivery:
    event = build_run_event(run, destination)
    return Delivery(
        destination=destination,
        run=run,
        kind=DeliveryKind.TRIGGER,
        event=event,
        dedup_key=event["dedup_key"],
        queued_at=now,
        next_attempt_at=now,
        created_at=now,
    )


# A key rotation's test of a new key, which carries the tested key's tail: it was refused, so
# that key was never stored, and the worker would send the test with the stored key instead,
# "proving" a key it never used. Retry now leaves it; rotating again tests the key again.
UNSTORED_KEY_TEST = Q(kind=DeliveryKind.TEST, event__payload__custom_details__has_key="tested_key")


def queue_test_resolves(delivered: "Sequence[FinishedAttempt]") -> list[Delivery]:
    """Queue the resolve of each delivered test alert whose test asked for one.

    Only a test that failed and was re-queued by "Retry now" carries resolve_after (an accepted
    test is resolved inline). Call it in the transaction that records the delivery: the resolve
    has a later id and the same destination and dedup key, so the worker sends it after.
    """
    resolves = [
        Delivery(
            destination_id=attempt.delivery.destination_id,
            kind=DeliveryKind.RESOLVE,
            event=build_resolve_event(dedup_key=attempt.delivery.dedup_key),
            dedup_key=attempt.delivery.dedup_key,
            queued_at=attempt.now,
            next_attempt_at=attempt.now,
            created_at=attempt.now,
        )
        for attempt in delivered
        if attempt.delivery.kind == DeliveryKind.TEST and attempt.delivery.resolve_after
    ]
    return Delivery.objects.bulk_create(resolves) if resolves else []


@transaction.atomic
def retry_now(deliveries) -> int:
    """Make failed deliveries due at once, restarting their attempt and age limits.

    Test alerts are re-queued too (but for a key rotation's, see UNSTORED_KEY_TEST); the worker
    sends them, and resolves those whose test asked for it. Returns how many were re-queued.
    finished_at keeps the time of the failure: until the delivery is delivered, the health
    page and /healthz still count it as failing.
    """
    now = timezone.now()
    return (
        Delivery.objects.filter(pk__in=[d.pk for d in deliveries], status=DeliveryStatus.FAILED)
        .exclude(UNSTORED_KEY_TEST)
        .update(
            status=DeliveryStatus.PENDING,
            attempts=0,
            queued_at=now,
            next_attempt_at=now,
            lease_expires_at=None,
            lease_token=None,
        )
    )
