"""The outbox: queue a run's events for its destinations, and make failed deliveries due again."""

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from detections.events import run_facts
from project import PRODUCT_NAME

from ..models import Delivery, DeliveryKind, DeliveryStatus, Destination
from ..pagerduty.events import PAGEABLE_OUTCOMES, DestinationOptions, build_trigger_event


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
    """Queue one trigger per enabled destination of a MATCHED or ERROR run.

    Call it inside the transaction that stores the run, so both are written or neither is.
    """
    if run.outcome not in PAGEABLE_OUTCOMES or not run.detection.enabled:
        return []
    destinations = run.detection.destinations.filter(enabled=True).defer("routing_key")
    now = timezone.now()
    deliveries = []
    for destination in destinations.order_by("pk"):
        event = build_run_event(run, destination)
        deliveries.append(
            Delivery(
                destination=destination,
                run=run,
                kind=DeliveryKind.TRIGGER,
                event=event,
                dedup_key=event["dedup_key"],
                queued_at=now,
                next_attempt_at=now,
                created_at=now,
            )
        )
    return Delivery.objects.bulk_create(deliveries)


@transaction.atomic
def retry_now(deliveries) -> int:
    """Make failed deliveries due at once, restarting their attempt and age limits."""
    now = timezone.now()
    return Delivery.objects.filter(
        pk__in=[d.pk for d in deliveries], status=DeliveryStatus.FAILED
    ).update(
        status=DeliveryStatus.PENDING,
        attempts=0,
        queued_at=now,
        next_attempt_at=now,
        finished_at=None,
        lease_expires_at=None,
        lease_token=None,
    )
