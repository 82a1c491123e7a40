"""What an admin or operator asks of a destination: a test alert now, or a preview of its event."""

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from project import PRODUCT_NAME

from .audit.records import update_recorded
from .delivery.attempts import AttemptResult, FinishedAttempt, record_attempt, send_event
from .delivery.outbox import destination_options
from .keys.routing import mask_routing_key
from .models import TEST_DEDUP_PREFIX, Delivery, DeliveryKind, DeliveryStatus, Destination
from .pagerduty.client import PagerDutyClient
from .pagerduty.events import (
    EVENT_MAX_BYTES,
    RunFacts,
    build_resolve_event,
    build_test_event,
    build_trigger_event,
    event_size,
)

logger = logging.getLogger("destinations.test_alerts")


@dataclass
class TestAlertOutcome:
    """The answer to one test alert (and to its resolve, when one was asked for)."""

    destination: Destination
    result: AttemptResult
    sent_dedup_key: str
    # None when the destination is not saved yet: there is no delivery log to write it to.
    delivery: Delivery | None = None
    resolve_result: AttemptResult | None = None

    @property
    def accepted(self) -> bool:
        return self.result.accepted

    @property
    def dedup_key(self) -> str:
        return self.result.dedup_key or self.sent_dedup_key

    @property
    def incident_open(self) -> bool:
        """Whether PagerDuty now holds an open test incident (accepted and not resolved)."""
        return self.accepted and not (self.resolve_result and self.resolve_result.accepted)

    @property
    def logged(self) -> bool:
        return self.delivery is not None

    def summary(self, *, resolve_option: str = "") -> str:
        """Two or three sentences for the admin's message or the command's output.

        `resolve_option` names how to ask for the resolve where the reader is, e.g. a checkbox.
        """
        name = self.destination.name
        if not self.accepted:
            text = f"Test alert to “{name}” failed: {self.result.error}. Hint: {self.result.hint}"
            return text + self._log_note()
        text = (
            f"Test alert to “{name}” accepted by PagerDuty ({self.result.status_code}): "
            f"“{self.result.message or 'no message'}”, dedup_key {self.dedup_key}."
        )
        if self.resolve_result is None:
            text += " An incident is now open in PagerDuty: resolve it there"
            text += f", or {resolve_option}." if resolve_option else "."
        elif self.resolve_result.accepted:
            text += " It was resolved right after, so no incident stays open."
        else:
            text += (
                f" Resolving it failed: {self.resolve_result.error}. The incident is still open: "
                f"resolve incident {self.dedup_key} in PagerDuty by hand."
            )
        return text + self._log_note()

    def _log_note(self) -> str:
        if self.logged:
            return ""
        return " Not logged: the destination is not saved yet."


def send_test_alert(
    *,
    destination: Destination,
    sent_by: str,
    resolve: bool = False,
    routing_key: str | None = None,
    client: PagerDutyClient | None = None,
) -> TestAlertOutcome:
    """Send a test alert at once, log it as a `test` delivery, optionally resolve it.

    `destination` may hold unsaved values (the admin's form): the event is built from them and
    nothing of the destination is saved. One not saved at all has no log: its test is not logged.
    `routing_key` tests a key that is not stored yet (typed in the form, or proved by a key
    rotation); the event then names its masked form as `tested_key`.
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
    delivery, result = _send_now(
        destination,
        DeliveryKind.TEST,
        event,
        routing_key=routing_key,
        client=client,
        resolve_after=resolve,
    )
    outcome = TestAlertOutcome(
        destination=destination, result=result, sent_dedup_key=dedup_key, delivery=delivery
    )
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
) -> tuple[Delivery | None, AttemptResult]:
    # Sent first and logged after: a process that dies mid-send leaves no row that a worker
    # might later resend with a different (stored) key.
    result = send_event(event, destination, client=client, routing_key=routing_key)
    if destination.pk is None:
        logger.info(
            "test_alert.unsaved_destination kind=%s status=%s accepted=%s dedup_key=%s",
            kind,
            result.status_code,
            result.accepted,
            event["dedup_key"],
        )
        return None, result
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


# The event preview: what a sample matched run would send, shown in the admin before any run.

SAMPLE_DETECTION_NAME = "Suspicious Login Attempts"
SAMPLE_SEVERITY = "HIGH"
SAMPLE_THRESHOLD = 10
SAMPLE_COUNT = 42
SAMPLE_REPLAY_LINK = "https://app.example.com/replay/123"
# How the admin describes the sample, so nobody mistakes it for a real run.
SAMPLE_RUN_DESCRIPTION = (
    f"a made-up {SAMPLE_SEVERITY} run of “{SAMPLE_DETECTION_NAME}” with {SAMPLE_COUNT} matches "
    f"(more than {SAMPLE_THRESHOLD})"
)


@dataclass(frozen=True)
class EventPreview:
    """A sample event as pretty JSON with the key masked, and its size as PagerDuty counts it."""

    event: dict
    size: int
    limit: int = EVENT_MAX_BYTES

    @property
    def json(self) -> str:
        return json.dumps(self.event, indent=2, ensure_ascii=False)

    @property
    def share_of_limit(self) -> str:
        return f"{self.size / self.limit:.1%}"


def sample_run() -> RunFacts:
    """A made-up MATCHED run with a replay link, built from plain values; nothing is stored."""
    ran_at = timezone.now().replace(microsecond=0)
    return RunFacts(
        detection_id="00000000-0000-4000-8000-000000000042",
        detection_name=SAMPLE_DETECTION_NAME,
        description="More failed logins for one account than usual.",
        severity=SAMPLE_SEVERITY,
        match_operator="GREATER_THAN",
        match_threshold=SAMPLE_THRESHOLD,
        match_eagerness="EAGER",
        outcome="MATCHED",
        match_count=SAMPLE_COUNT,
        run_type="SCHEDULED",
        run_id="sample-run",
        ran_at=ran_at,
        range_start=ran_at - timedelta(hours=1),
        range_end=ran_at,
        replay_link=SAMPLE_REPLAY_LINK,
    )


def preview_event(destination: Destination) -> EventPreview:
    """The trigger a sample run would send to this destination, its key shown masked only."""
    event = build_trigger_event(
        run=sample_run(),
        options=destination_options(destination),
        default_source=settings.PAGERDUTY_DEFAULT_SOURCE,
        client=PRODUCT_NAME,
        client_url=settings.SITE_URL,
    )
    # The size is measured with a key of the real length; the shown key is only its masked form.
    return EventPreview(
        event={"routing_key": destination.masked_routing_key, **event},
        size=event_size(event),
    )


@dataclass(frozen=True)
class EnabledOutcome:
    """How many records an enable/disable changed, and how many a configuration file manages."""

    changed: int
    managed: int


def set_enabled(*, records: QuerySet, enabled: bool) -> EnabledOutcome:
    """Enable or disable destinations or detections, keeping each change in the audit trail.

    Records a configuration file manages are left alone: they change in their file only.
    """
    managed = records.exclude(managed_by="").count()
    changed = update_recorded(records.filter(managed_by=""), enabled=enabled)
    return EnabledOutcome(changed=changed, managed=managed)
