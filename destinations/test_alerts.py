"""Send a test alert to a destination now, and tell the truth about PagerDuty's answer."""

import uuid
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from project import PRODUCT_NAME

from .delivery import (
    AttemptResult,
    FinishedAttempt,
    destination_options,
    record_attempt,
    send_event,
)
from .models import Delivery, DeliveryKind, DeliveryStatus, Destination
from .pagerduty.client import PagerDutyClient
from .pagerduty.events import build_resolve_event, build_test_event
from .routing_keys import mask_routing_key

TEST_DEDUP_PREFIX = "test-"


@dataclass
class TestAlertOutcome:
    """The answer to one test alert (and to its resolve, when one was asked for)."""

    destination: Destination
    delivery: Delivery
    result: AttemptResult
    resolve_result: AttemptResult | None = None

    @property
    def accepted(self) -> bool:
        return self.result.accepted

    @property
    def dedup_key(self) -> str:
        return self.result.dedup_key or self.delivery.dedup_key

    def summary(self) -> str:
        """One or two sentences for the admin's message or the command's output."""
        name = self.destination.name
        if not self.accepted:
            return f"Test alert to “{name}” failed: {self.result.error}. Hint: {self.result.hint}"
        text = (
            f"Test alert to “{name}” accepted by PagerDuty ({self.result.status_code}): "
            f"“{self.result.message or 'no message'}”, dedup_key {self.dedup_key}."
        )
        if self.resolve_result is not None:
            if self.resolve_result.accepted:
                text += " It was resolved right after, so no incident stays open."
            else:
                text += (
                    f" Resolving it failed: {self.resolve_result.error}; resolve incident "
                    f"{self.dedup_key} in PagerDuty by hand."
                )
        return text


def send_test_alert(
    *,
    destination: Destination,
    sent_by: str,
    resolve: bool = False,
    routing_key: str | None = None,
    client: PagerDutyClient | None = None,
) -> TestAlertOutcome:
    """Send a test alert at once, log it as a `test` delivery, optionally resolve it.

    `routing_key` tests a key that is not stored yet (key rotation proves the new key with it).
    """
    now = timezone.now()
    dedup_key = f"{TEST_DEDUP_PREFIX}{uuid.uuid4().hex}"
    event = build_test_event(
        destination_name=destination.name,
        options=destination_options(destination),
        sent_by=sent_by,
        sent_at=now,
        dedup_key=dedup_key,
        client=PRODUCT_NAME,
        client_url=settings.SITE_URL,
    )
    if routing_key is not None:
        event["payload"]["custom_details"]["tested_key"] = mask_routing_key(routing_key)
    result = _send_now(
        destination,
        DeliveryKind.TEST,
        event,
        routing_key=routing_key,
        client=client,
        resolve_after=resolve,
    )
    outcome = TestAlertOutcome(destination=destination, delivery=result[0], result=result[1])
    if resolve and outcome.accepted:
        _, outcome.resolve_result = _send_now(
            destination,
            DeliveryKind.RESOLVE,
            build_resolve_event(dedup_key=dedup_key),
            routing_key=routing_key,
            client=client,
        )
    return outcome


def _send_now(
    destination: Destination,
    kind: str,
    event: dict,
    *,
    routing_key: str | None,
    client: PagerDutyClient | None,
    resolve_after: bool = False,
) -> tuple[Delivery, AttemptResult]:
    # Sent first and logged after: a process that dies mid-send leaves no row that a worker
    # might later resend with a different (stored) key.
    result = send_event(event, destination, client=client, routing_key=routing_key)
    delivery = Delivery(
        destination=destination,
        kind=kind,
        event=event,
        dedup_key=event["dedup_key"],
        status=DeliveryStatus.SENDING,
        attempts=1,
        total_attempts=1,
        queued_at=result.started_at,
        next_attempt_at=result.started_at,
        created_at=result.started_at,
        # An accepted test is resolved right here; a refused one, should "Retry now" re-queue
        # it, is resolved by the worker once delivered.
        resolve_after=resolve_after and not result.accepted,
    )
    with transaction.atomic():
        delivery.save()
        # What was stored is what the admin is told: an answer too odd to store is not shown.
        stored = record_attempt(FinishedAttempt(delivery, result, timezone.now()), retry=False)
    return delivery, stored.result
