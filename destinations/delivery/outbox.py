"""The outbox: queue a run's events for its destinations, and make failed deliveries due again."""

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q, Value
from django.db.models.functions import Concat
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
    build_fallback_event,
    build_resolve_event,
    build_trigger_event,
)
from .resolves import queue_auto_resolves
from .routing import destinations_to_page
from .wakeup import notify_workers

logger = logging.getLogger("destinations.delivery")


def destination_options(destination: Destination) -> DestinationOptions:
    """The parts of a destination that shape its events."""
    return DestinationOptions(
        severity_override=destination.severity_override,
        component=destination.component,
        group=destination.group,
        event_class=destination.event_class,
        custom_details=dict(destination.custom_details or {}),
        summary_template=destination.summary_template,
        destination_name=destination.name,
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
    return _queued(deliveries)


def _queued(deliveries: list[Delivery]) -> list[Delivery]:
    """Store new deliveries, waking the workers (after the commit) if any is due now."""
    if not deliveries:
        return []
    created = Delivery.objects.bulk_create(deliveries)
    # A voided resolve is stored finished; only pending rows are the workers' to send.
    if any(delivery.status == DeliveryStatus.PENDING for delivery in created):
        notify_workers()
    return created


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
    return _queued(resolves)


# Fallback (§10): a page that failed goes, once, to its destination's fallback.


def queue_fallbacks(failed: "Sequence[tuple[FinishedAttempt, str]]") -> list[Delivery]:
    """Queue each failed page's event, with why it failed, to its destination's fallback.

    Call it in the transaction that records the failures. One hop only: a delivery that is
    itself a fallback is not handed on, nor a test alert (the admin who sent it sees the
    failure; another service should not be paged for a test), nor one that already fell back
    (Retry now failed it again). A failed resolve follows its trigger: it goes to the fallback
    only when the incident was opened there by a fallback of this destination. Nothing goes to a
    disabled fallback, or to one that got this run's page already; the failure's log says so.
    """
    reasons = {
        attempt.delivery.pk: (attempt, reason)
        for attempt, reason in failed
        if attempt.delivery.kind != DeliveryKind.TEST
    }
    if not reasons:
        return []
    try:
        # In a savepoint: should handing on fail, the failure itself is still recorded.
        with transaction.atomic():
            return _queue_fallbacks(reasons)
    except Exception as error:
        logger.warning(
            "delivery.fallback_failed deliveries=%s error=%s",
            ",".join(map(str, reasons)),
            type(error).__name__,
        )
        return []


def _queue_fallbacks(reasons: "dict[int, tuple[FinishedAttempt, str]]") -> list[Delivery]:
    """Queue the fallbacks of these failed deliveries (by id, with their attempt and failure)."""
    rows = (
        Delivery.objects.filter(
            pk__in=reasons, fallback_of__isnull=True, destination__fallback__isnull=False
        )
        .exclude(kind=DeliveryKind.TEST)
        .annotate(
            fell_back=Exists(Delivery.objects.filter(fallback_of=OuterRef("pk"))),
            paged_already=Exists(
                Delivery.objects.filter(
                    run_id=OuterRef("run_id"),
                    destination_id=OuterRef("destination__fallback_id"),
                    kind=OuterRef("kind"),
                )
            ),
        )
        .values_list(
            "pk",
            "run_id",
            "kind",
            "destination__name",
            "destination__fallback_id",
            "destination__fallback__name",
            "destination__fallback__enabled",
            "fell_back",
            "paged_already",
        )
    )
    queued, notes = [], {}
    for pk, run_id, kind, name, fallback_id, fallback_name, enabled, fell_back, paged in rows:
        attempt, reason = reasons[pk]
        delivery = attempt.delivery
        if fell_back:
            continue
        if kind == DeliveryKind.RESOLVE and not _opened_by_fallback(delivery, fallback_id):
            continue
        if not enabled or (run_id is not None and paged):
            why = "it is disabled" if not enabled else "this run pages it already"
            notes[pk] = f" — not sent to the fallback “{fallback_name}”: {why}"
            continue
        queued.append(
            Delivery(
                destination_id=fallback_id,
                run_id=run_id,
                kind=kind,
                event=build_fallback_event(delivery.event, destination_name=name, reason=reason),
                dedup_key=delivery.dedup_key,
                fallback_of_id=pk,
                queued_at=attempt.now,
                next_attempt_at=attempt.now,
                created_at=attempt.now,
            )
        )
    for pk, note in notes.items():
        Delivery.objects.filter(pk=pk).update(last_error=Concat(F("last_error"), Value(note)))
    created = _queued(queued)
    for fallback in created:
        logger.info(
            "delivery.fallback delivery=%s fallback_of=%s destination=%s",
            fallback.pk,
            fallback.fallback_of_id,
            fallback.destination_id,
        )
    return created


def _opened_by_fallback(resolve: Delivery, fallback_id: int) -> bool:
    """Whether the fallback's last trigger for this incident was a fallback of this destination."""
    last_trigger = (
        Delivery.objects.filter(
            destination_id=fallback_id, dedup_key=resolve.dedup_key, kind=DeliveryKind.TRIGGER
        )
        .order_by("-id")
        .values_list("fallback_of__destination_id", flat=True)
        .first()
    )
    return last_trigger == resolve.destination_id


@transaction.atomic
def retry_now(deliveries) -> int:
    """Make failed deliveries due at once, restarting their attempt and age limits.

    Test alerts are re-queued too (but for a key rotation's, see UNSTORED_KEY_TEST); the worker
    sends them, and resolves those whose test asked for it. Returns how many were re-queued.
    finished_at keeps the time of the failure: until the delivery is delivered, the health
    page and /healthz still count it as failing.
    """
    now = timezone.now()
    requeued = (
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
    if requeued:
        notify_workers()
    return requeued
