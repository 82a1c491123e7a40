"""One delivery attempt: post an event to PagerDuty, then record what happened to the delivery."""

import dataclasses
import functools
import logging
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from django.db import transaction
from django.utils import timezone

from ..models import Delivery, DeliveryAttempt, DeliveryStatus, Destination
from ..pagerduty.client import Accepted, PagerDutyClient, events_url, get_client, scrub_secrets
from ..pagerduty.errors import PagerDutyError, UnexpectedFailure
from ..pagerduty.events import (
    serialize_event,
)
from ..tallies import count_attempts, count_finished
from .compiled import STAND_IN_ID, CompiledQuery, insert_rows, update_each_row
from .outbox import queue_fallbacks, queue_test_resolves
from .policy import give_up_reason, retry_delay_seconds

logger = logging.getLogger("destinations.delivery")

# Characters of an unforeseen exception's message kept in the delivery log.
UNEXPECTED_DETAIL_MAX = 300


class KeyNotUsable(PagerDutyError):
    """Nothing was sent: the destination has no routing key this server can use."""

    # Retried (within the attempt and age limits): repairing the key makes the next attempt
    # succeed, and the page is not lost meanwhile.
    retryable = True
    reason = ""

    def __init__(self) -> None:
        super().__init__(self.reason)

    def _sentence(self) -> str:
        return f"Not sent: {self.message}"


class UnreadableRoutingKey(KeyNotUsable):
    """The stored routing key cannot be decrypted, so nothing was sent."""

    reason = "the stored routing key cannot be decrypted with FIELD_ENCRYPTION_KEYS"
    hint = (
        "Add the encryption key that stored this routing key back to FIELD_ENCRYPTION_KEYS "
        "(after the first key), or enter the routing key again on the destination."
    )


class MissingRoutingKey(KeyNotUsable):
    """The destination has no routing key (an empty one), so nothing was sent."""

    reason = "the destination has no routing key"
    hint = (
        "Enter the routing key on the destination in the admin, or run: python manage.py "
        "rotate_routing_key DESTINATION"
    )


@dataclass
class AttemptResult:
    """What one HTTP attempt came to, before any decision about retrying."""

    started_at: datetime
    accepted: bool
    status_code: int | None = None
    duration_ms: int = 0
    message: str = ""
    errors: list = field(default_factory=list)
    dedup_key: str = ""
    response_excerpt: str = ""
    error: PagerDutyError | None = None

    @property
    def retryable(self) -> bool:
        return self.error is not None and self.error.retryable

    @property
    def hint(self) -> str:
        return self.error.hint if self.error is not None else ""

    @classmethod
    def of_answer(
        cls, answer: Accepted | PagerDutyError, *, started_at: datetime
    ) -> "AttemptResult":
        """The result of an attempt PagerDuty answered: its acceptance, or why it refused."""
        refused = isinstance(answer, PagerDutyError)
        return cls(
            started_at=started_at,
            accepted=not refused,
            status_code=answer.status_code,
            duration_ms=answer.duration_ms,
            message=answer.message,
            errors=list(answer.errors) if refused else [],
            dedup_key="" if refused else answer.dedup_key,
            response_excerpt=answer.response_excerpt,
            error=answer if refused else None,
        )


def unreadable_key_result() -> AttemptResult:
    """The attempt that could not be made because the routing key cannot be decrypted."""
    error = UnreadableRoutingKey()
    return AttemptResult(started_at=timezone.now(), accepted=False, error=error)


def send_event(
    event: dict,
    destination: Destination,
    *,
    client: PagerDutyClient | None = None,
    routing_key: str | None = None,
    read_routing_key: Callable[[], str | None] | None = None,
) -> AttemptResult:
    """Post one event to the destination's PagerDuty URL and say what came of it; never raises.

    The key is the one given, else `read_routing_key()`, else the destination's stored key.
    """
    started_at = timezone.now()
    try:
        if routing_key is None:
            routing_key = (read_routing_key or destination.readable_routing_key)()
        if routing_key is None:
            return unreadable_key_result()
        if not routing_key.strip():
            # An empty key would reach PagerDuty as routing_key "" (a restore of an old dump
            # does that); it is refused like an unreadable one, and retried.
            return AttemptResult(started_at=started_at, accepted=False, error=MissingRoutingKey())
        return _post_event(event, destination, routing_key=routing_key, client=client)
    except Exception as error:
        # This is where a failure no one foresaw (a bad region, a parser bug, anything) becomes
        # an attempt like any other: logged, retried under the same limits, never an escape
        # that leaves the delivery `sending` for its lease to expire and send it again.
        return unexpected_failure_result(error, started_at=started_at, routing_key=routing_key)


def _post_event(
    event: dict, destination: Destination, *, routing_key: str, client: PagerDutyClient | None
) -> AttemptResult:
    """Serialize and post the event; PagerDuty's refusals become the result, others raise."""
    started_at = timezone.now()
    body = serialize_event(event, routing_key=routing_key)
    try:
        accepted = (client or get_client()).send(
            body,
            routing_key=routing_key,
            url=events_url(destination.region),
            timeout=destination.timeout_seconds,
        )
    except PagerDutyError as error:
        return AttemptResult.of_answer(error, started_at=started_at)
    return AttemptResult.of_answer(accepted, started_at=started_at)


def unexpected_failure_result(
    error: BaseException, *, started_at: datetime, routing_key: str | None
) -> AttemptResult:
    """The retryable attempt an unforeseen exception came to, named by its class, key masked.

    Only the exception's class and its own message (with `routing_key` masked) are kept: never
    a traceback or the values of local variables, which hold the key and the event.
    """
    detail = _exception_text(error, routing_key=routing_key)
    where = _raised_at(error)
    logger.warning(
        "delivery.unexpected_failure error=%s where=%s message=%s",
        type(error).__name__,
        where,
        detail,
    )
    failure = UnexpectedFailure(
        f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    )
    return AttemptResult(
        started_at=started_at,
        accepted=False,
        duration_ms=_ms_since(started_at),
        message=failure.message,
        error=failure,
    )


def _exception_text(error: BaseException, *, routing_key: str | None) -> str:
    """The exception's own message on one line, shortened, with the routing key masked."""
    try:
        text = str(error)
    except Exception:  # an exception whose __str__ fails still names its class
        return ""
    # Masked before it is cut, so no part of the key survives at the cut.
    text = " ".join(scrub_secrets(text, routing_key=routing_key).split())
    if len(text) > UNEXPECTED_DETAIL_MAX:
        text = text[: UNEXPECTED_DETAIL_MAX - 1] + "…"
    return text


def _raised_at(error: BaseException) -> str:
    """The file and line the exception was raised at, for the log (no values, so no secrets)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    return f"{Path(frames[-1].filename).name}:{frames[-1].lineno}"


def _ms_since(moment: datetime) -> int:
    """Whole milliseconds from a moment until now."""
    return max(0, round((timezone.now() - moment).total_seconds() * 1000))


@dataclass(frozen=True)
class FinishedAttempt:
    """An attempt that was made and is waiting to be stored, with when it was finished."""

    delivery: Delivery
    result: AttemptResult
    now: datetime
    lease_token: uuid.UUID | None = None


def record_attempt(attempt: FinishedAttempt, *, retry: bool = True) -> FinishedAttempt:
    """Store the attempt and move the delivery on; return the attempt as it was stored.

    The delivery becomes delivered, failed, or pending again. With `retry=False` (test alerts,
    which an admin is waiting for) a retryable failure is final. With a lease token, the delivery
    is only moved on if this worker still holds it; the attempt is logged either way.

    When the answer cannot be stored as it came (a value no column takes), the attempt is stored
    with the answer's status but none of its text, so the delivery still moves on under the
    same limits instead of staying `sending` until its lease expires and it is sent again.
    Raises only when that fails too: then the database itself is failing, and the lease expiry
    (logged as an attempt when the delivery is claimed again) is all that is left.
    """
    try:
        record_attempts([attempt], retry=retry)
    except Exception as error:
        logger.warning(
            "delivery.record_failed delivery=%s error=%s", attempt.delivery.pk, type(error).__name__
        )
        attempt = _without_answer(attempt, error)
        record_attempts([attempt], retry=retry)
    return attempt


def _without_answer(attempt: FinishedAttempt, error: Exception) -> FinishedAttempt:
    """The attempt with only the status and timing of PagerDuty's answer, which always fit."""
    result = attempt.result
    answer = f"the answer ({result.status_code})" if result.status_code else "the answer"
    note = f"{answer} could not be recorded: {type(error).__name__}"
    if result.accepted:
        bare = AttemptResult(
            started_at=result.started_at,
            accepted=True,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            message=note,
        )
    else:
        retry_after = result.error.retry_after if result.error is not None else None
        failure = UnexpectedFailure(note, retry_after=retry_after)
        bare = AttemptResult(
            started_at=result.started_at,
            accepted=False,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            message=note,
            error=failure,
        )
    return dataclasses.replace(attempt, result=bare)


def record_attempts(attempts: Sequence[FinishedAttempt], *, retry: bool = True) -> list[str]:
    """Store several attempts, each as record_attempt() would, in one transaction.

    The worker records what its threads finished in batches: one transaction and one insert
    for many attempts cost the database (and SQLite's single writer) far less than one each.
    Returns each delivery's new status, in order.
    """
    changes = [_attempt_changes(attempt, retry=retry) for attempt in attempts]
    with transaction.atomic():
        held = _movable(attempts)
        moved = [attempt.delivery.pk in held for attempt in attempts]
        _update_each(
            [
                (attempt.delivery.pk, fields)
                for attempt, (_, fields, _), was_moved in zip(attempts, changes, moved, strict=True)
                if was_moved
            ]
        )
        # Follow-ups of what was just delivered, in the same transaction as its status.
        queue_test_resolves(
            [
                attempt
                for attempt, (status, _, _), was_moved in zip(attempts, changes, moved, strict=True)
                if was_moved and status == DeliveryStatus.DELIVERED
            ]
        )
        # What just failed goes to its destination's fallback, in the same transaction (§10).
        queue_fallbacks(
            [
                (attempt, fields["last_error"])
                for attempt, (status, fields, _), was_moved in zip(
                    attempts, changes, moved, strict=True
                )
                if was_moved and status == DeliveryStatus.FAILED
            ]
        )
        insert_rows(
            DeliveryAttempt,
            (
                "delivery",
                "number",
                "started_at",
                "duration_ms",
                "status_code",
                "result",
                "response_excerpt",
                "error",
            ),
            [
                (
                    attempt.delivery.pk,
                    attempt.delivery.total_attempts,
                    attempt.result.started_at,
                    attempt.result.duration_ms,
                    attempt.result.status_code,
                    outcome,
                    attempt.result.response_excerpt,
                    "" if attempt.result.accepted else str(attempt.result.error),
                )
                for attempt, (_, _, outcome) in zip(attempts, changes, strict=True)
            ],
        )
        # The /metrics counters, in this transaction: one statement for the whole batch each.
        count_attempts(
            (attempt.delivery, attempt.result.status_code, attempt.result.duration_ms)
            for attempt in attempts
        )
        count_finished(
            (attempt.delivery, status)
            for attempt, (status, _, _), was_moved in zip(attempts, changes, moved, strict=True)
            if was_moved
        )
    statuses = []
    for attempt, (status, fields, outcome), was_moved in zip(attempts, changes, moved, strict=True):
        delivery, result = attempt.delivery, attempt.result
        if was_moved:
            for name, value in fields.items():
                setattr(delivery, name, value)
        log = logger.info if result.accepted else logger.warning
        log(
            "delivery.attempt delivery=%s destination=%s attempt=%s status=%s result=%s",
            delivery.pk,
            delivery.destination_id,
            delivery.attempts,
            result.status_code,
            outcome if was_moved else f"{outcome} (lease lost)",
        )
        statuses.append(status if was_moved else delivery.status)
    return statuses


def _movable(attempts: Sequence[FinishedAttempt]) -> set[int]:
    """The deliveries these attempts may move on, locked: those still held under their lease."""
    leases = {attempt.delivery.pk: attempt.lease_token for attempt in attempts}
    rows = _held(len(leases)).run(*leases)
    return {
        pk
        for pk, status, lease_token in rows
        if leases[pk] is None or (status == DeliveryStatus.SENDING and lease_token == leases[pk])
    }


@functools.cache
def _held(count: int) -> CompiledQuery:
    """The status and lease of `count` deliveries, locked; compiled once (bench `throughput`)."""
    return CompiledQuery(
        lambda *ids: (
            Delivery.objects.select_for_update()
            .filter(pk__in=ids)
            .values_list("pk", "status", "lease_token")
        ),
        stand_ins=[STAND_IN_ID - n for n in range(count)],
        fields=[Delivery._meta.pk] * count,
    )


def _update_each(changes: list[tuple[int, dict]]) -> None:
    """Write each delivery's own new values: one statement per set of columns (update_each_row).

    QuerySet.update() spends about half a millisecond building its query for every row, far
    more than the database takes to write it, and the worker records hundreds a second.
    """
    by_columns: dict[tuple[str, ...], list[tuple]] = defaultdict(list)
    for pk, fields in changes:
        by_columns[tuple(fields)].append((pk, *fields.values()))
    for names, rows in by_columns.items():
        update_each_row(Delivery, names, rows)


def _attempt_changes(attempt: FinishedAttempt, *, retry: bool) -> tuple[str, dict, str]:
    """The delivery's new status, the fields that say so, and the attempt's logged result."""
    delivery, result, now = attempt.delivery, attempt.result, attempt.now
    attempts = delivery.attempts
    fields: dict = {
        "last_status_code": result.status_code,
        "lease_expires_at": None,
        "lease_token": None,
    }
    if result.accepted:
        status = DeliveryStatus.DELIVERED
        fields.update(
            status=status,
            delivered_at=now,
            finished_at=now,
            pagerduty_message=result.message,
            pagerduty_dedup_key=result.dedup_key,
            pagerduty_errors=[],
            last_error="",
        )
        return status, fields, DeliveryAttempt.Result.DELIVERED
    error_text = str(result.error)
    fields.update(
        pagerduty_message=result.message, pagerduty_errors=result.errors, last_error=error_text
    )
    reason = None
    if result.retryable and retry:
        reason = give_up_reason(attempts=attempts, queued_at=delivery.queued_at, now=now)
    if result.retryable and retry and reason is None:
        status = DeliveryStatus.PENDING
        retry_after = result.error.retry_after if result.error else None
        delay = retry_delay_seconds(attempts, retry_after=retry_after)
        fields.update(status=status, next_attempt_at=now + timedelta(seconds=delay))
        return status, fields, DeliveryAttempt.Result.RETRY
    status = DeliveryStatus.FAILED
    if reason:
        fields["last_error"] = f"{error_text} — {reason}"
    fields.update(status=status, finished_at=now)
    return status, fields, DeliveryAttempt.Result.FAILED
