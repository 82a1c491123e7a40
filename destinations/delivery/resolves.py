"""Auto-resolve: the resolves a NOT_MATCHED run queues, and those the key's rotation voids."""

import logging
from collections.abc import Sequence
from datetime import datetime

from django.db.models import OuterRef, Subquery
from django.utils import timezone

from ..models import (
    UNFINISHED,
    Delivery,
    DeliveryAttempt,
    DeliveryKind,
    DeliveryStatus,
    Destination,
)
from ..pagerduty.events import build_resolve_event, dedup_key_for
from ..tallies import count_finished

logger = logging.getLogger("destinations.delivery")

KEY_REPLACED_ERROR = (
    "Not sent: the routing key was rotated after the trigger was sent, so PagerDuty would not "
    "match this resolve to the incident (it belongs to the old key's integration). Resolve "
    "incident {dedup_key} by hand in PagerDuty."
)


def queue_auto_resolves(run, *, now: datetime) -> list[Delivery]:
    """Queue a resolve to each auto-resolving destination whose last event here was a trigger.

    Only the events of detection runs count (test alerts have dedup keys of their own). A
    resolve has a later id than that trigger, so the order per incident sends it after. Call it
    in the run's transaction; a second NOT_MATCHED run then finds a resolve last, and queues none.
    """
    dedup_key = dedup_key_for(run.detection.name)
    last_event = Delivery.objects.filter(
        destination_id=OuterRef("pk"),
        dedup_key=dedup_key,
        run__isnull=False,
        kind__in=(DeliveryKind.TRIGGER, DeliveryKind.RESOLVE),
    ).order_by("-id")
    destinations = (
        Destination.objects.filter(enabled=True, auto_resolve=True)
        .annotate(
            last_kind=Subquery(last_event.values("kind")[:1]),
            last_status=Subquery(last_event.values("status")[:1]),
        )
        .filter(last_kind=DeliveryKind.TRIGGER)
        .defer("routing_key")
        .order_by("pk")
    )
    resolves = []
    for destination in destinations:
        resolve = Delivery(
            destination=destination,
            run=run,
            kind=DeliveryKind.RESOLVE,
            event=build_resolve_event(dedup_key=dedup_key),
            dedup_key=dedup_key,
            queued_at=now,
            next_attempt_at=now,
            created_at=now,
        )
        # A trigger still being sent goes through the current key; whether the resolve may
        # follow it is decided when the resolve is claimed, once that trigger is finished.
        if destination.last_status not in UNFINISHED and key_replaced_since_trigger(
            destination_id=destination.pk,
            dedup_key=dedup_key,
            rotated_at=destination.routing_key_rotated_at,
        ):
            _void(resolve, now=now)
        resolves.append(resolve)
    # Stored by the caller in this transaction; a voided resolve is finished (failed) already.
    count_finished((resolve, resolve.status) for resolve in resolves)
    return resolves


def key_replaced_since_trigger(
    *,
    destination_id: int,
    dedup_key: str,
    rotated_at: datetime | None,
    before_id: int | None = None,
) -> bool:
    """Whether the key was replaced after the latest delivered trigger of a run for this incident.

    That trigger opened (or updated) the incident under the key it was sent with; a resolve
    through a newer key reaches another integration, where PagerDuty accepts it and does nothing.
    """
    if rotated_at is None:
        return False
    delivered = DeliveryAttempt.objects.filter(
        delivery__destination_id=destination_id,
        delivery__dedup_key=dedup_key,
        delivery__kind=DeliveryKind.TRIGGER,
        delivery__run__isnull=False,
        result=DeliveryAttempt.Result.DELIVERED,
    )
    if before_id is not None:
        delivered = delivered.filter(delivery_id__lt=before_id)
    sent_at = (
        delivered.order_by("-delivery_id", "-started_at")
        .values_list("started_at", flat=True)
        .first()
    )
    return sent_at is not None and rotated_at > sent_at


def void_resolves_through_replaced_keys(
    rows: Sequence[Delivery], *, now: datetime | None = None
) -> list[Delivery]:
    """Finish unsent the due resolves whose trigger went through a key since replaced; the rest.

    Called on the rows a worker is about to claim: the key may have been rotated after the
    resolve was queued. Their triggers are finished by then (the order per incident), so the key
    that sent them is known. The rows must carry run_id and destination.routing_key_rotated_at.
    """
    now = now or timezone.now()
    voided = [
        row
        for row in rows
        if row.kind == DeliveryKind.RESOLVE
        and row.run_id is not None
        and key_replaced_since_trigger(
            destination_id=row.destination_id,
            dedup_key=row.dedup_key,
            rotated_at=row.destination.routing_key_rotated_at,
            before_id=row.pk,
        )
    ]
    voided_ids = {row.pk for row in voided}
    for row in voided:
        _void(row, now=now)
        Delivery.objects.filter(pk=row.pk).update(
            status=row.status,
            finished_at=row.finished_at,
            last_error=row.last_error,
            lease_expires_at=None,
            lease_token=None,
        )
    count_finished((row, row.status) for row in voided)
    return [row for row in rows if row.pk not in voided_ids]


def _void(resolve: Delivery, *, now: datetime) -> None:
    """Mark a resolve finished without an attempt, saying why and what to do instead."""
    # Failed, not delivered: the incident is still open and someone has to resolve it, so the
    # health page and /healthz count it as a failure of this destination until they look.
    resolve.status = DeliveryStatus.FAILED
    resolve.finished_at = now
    resolve.last_error = KEY_REPLACED_ERROR.format(dedup_key=resolve.dedup_key)
    logger.warning(
        "delivery.resolve_not_sent destination=%s dedup_key=%s reason=routing_key_rotated",
        resolve.destination_id,
        resolve.dedup_key,
    )
