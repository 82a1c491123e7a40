"""Claiming due deliveries: leases, SKIP LOCKED, order per incident and the send budget."""

import functools
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, transaction
from django.db.models import OuterRef, Q, Subquery, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from ..models import UNFINISHED, Delivery, DeliveryAttempt, DeliveryStatus, Destination
from .budget import take_tokens
from .compiled import STAND_IN_MOMENT, CompiledQuery
from .resolves import void_resolves_through_replaced_keys

LOST_LEASE_ERROR = (
    "The worker sending this attempt stopped before recording PagerDuty's answer "
    "(its lease expired); the delivery was taken up again."
)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds until `lease_token` is released or its lease expires."""

    delivery: Delivery
    lease_token: uuid.UUID


# What sending a claimed delivery and recording its attempt read of it and its destination;
# the rest (the delivery log's text and JSON, timestamps) would be parsed for nothing. Kind,
# dedup key and resolve_after tell the recording whether a delivered test is to be resolved;
# run and the key's rotation time whether a run's resolve may still be sent.
_CLAIMED_FIELDS = (
    "destination_id",
    "run_id",
    "kind",
    "dedup_key",
    "resolve_after",
    "event",
    "status",
    "attempts",
    "total_attempts",
    "queued_at",
    "lease_expires_at",
    "destination__region",
    "destination__timeout_seconds",
    "destination__routing_key_rotated_at",
)


@functools.cache
def _claimable():
    """Deliveries that may be sent once due, with their destination, locked as they are read.

    Built once: it is the same on every claim (only the filters on time are added), and
    building it costs about as much as the database takes to run it.
    """
    # The earlier unfinished event of the same incident, as a scalar subquery (`(SELECT id …
    # LIMIT 1) IS NULL`) rather than NOT EXISTS. PostgreSQL turns NOT EXISTS into an anti-join
    # planned from the table's statistics; after a quiet spell those say almost nothing is
    # unfinished, and when a burst of pages then arrives it scanned every unfinished row once per
    # due row (2,000 pending after 200,000 delivered: 1.5 s a claim). A scalar subquery is never
    # flattened into a join: it runs per due row as one probe of the incident index, whatever
    # the statistics say (21 ms for the same claim).
    earlier_unfinished = (
        Delivery.objects.filter(
            destination_id=OuterRef("destination_id"),
            dedup_key=OuterRef("dedup_key"),
            id__lt=OuterRef("id"),
            status__in=UNFINISHED,
        )
        .order_by()
        .values("id")[:1]
    )
    # Every kind, test alerts included: the admin sends a test inline and stores its row already
    # `sending` (without a lease) in the transaction that records the answer, so the only
    # pending tests are those "Retry now" re-queued, and those are the worker's to send.
    return (
        # Order per incident: a later event for the same destination and dedup key waits.
        Delivery.objects.alias(earlier_unfinished=Subquery(earlier_unfinished))
        .filter(earlier_unfinished__isnull=True)
        .order_by("next_attempt_at", "id")
        .select_related("destination")
        .only(*_CLAIMED_FIELDS)
        # The key's raw token, decrypted by the sending thread: one undecryptable key must
        # fail its own deliveries, not every claim.
        .annotate(routing_key_token=Cast("destination__routing_key", TextField()))
        .select_for_update(skip_locked=True, of=("self",))
    )


def _expired(now: datetime) -> Q:
    # A row being sent without a lease (a test alert in the admin's own transaction) has a
    # NULL lease_expires_at, which no comparison matches: it is never taken from its sender.
    return Q(status=DeliveryStatus.SENDING, lease_expires_at__lte=now)


def _pending(now: datetime) -> Q:
    return Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)


def _select_due(now: datetime, *, limit: int, skip: list[int]) -> list[Delivery]:
    """Up to `limit` due deliveries: expired leases first, then pending ones by due time.

    Two queries rather than one with OR: each is a range scan of its own index that stops after
    `limit` rows, where the OR made the database read and sort every due row on each claim.
    Expired leases go first as they were due before they were first claimed; they are rare, so
    a plain existence check spares building the full query for them on almost every claim.
    """
    claimable = _claimable().exclude(pk__in=skip) if skip else _claimable()
    rows = []
    if _any_expired().run(now):
        rows = list(claimable.filter(_expired(now))[:limit])
    if len(rows) < limit:
        if skip:
            rows += claimable.filter(_pending(now))[: limit - len(rows)]
        else:
            # The common claim runs the same SQL each time: compiled once (_due_pending).
            rows += [_claimed_row(values) for values in _due_pending(limit - len(rows)).run(now)]
    return rows


_NEXT_ATTEMPT_AT = Delivery._meta.get_field("next_attempt_at")
# The claimed fields as values_list() columns, each model's in its field order (for from_db()).
_DELIVERY_COLUMNS = tuple(
    field.attname
    for field in Delivery._meta.concrete_fields
    if field.primary_key or field.attname in _CLAIMED_FIELDS
)
_DESTINATION_FIELDS = tuple(
    name.removeprefix("destination__")
    for name in _CLAIMED_FIELDS
    if name.startswith("destination__")
)
_DESTINATION_COLUMNS = tuple(
    field.attname
    for field in Destination._meta.concrete_fields
    if field.primary_key or field.attname in _DESTINATION_FIELDS
)


@functools.cache
def _any_expired() -> CompiledQuery:
    """Whether any lease has expired at a moment: one row's id, or none."""
    return CompiledQuery(
        lambda now: Delivery.objects.filter(_expired(now)).values_list("pk")[:1],
        stand_ins=[STAND_IN_MOMENT],
        fields=[Delivery._meta.get_field("lease_expires_at")],
    )


@functools.cache
def _due_pending(limit: int) -> CompiledQuery:
    """The first `limit` pending deliveries due at a moment, locked, as _claimable() reads them.

    Compiled once per limit (bench `throughput`: 1.8 ms of CPU a claim, then 0.3 ms).
    """
    columns = (
        *_DELIVERY_COLUMNS,
        *(f"destination__{name}" for name in _DESTINATION_COLUMNS if name != "id"),
        "routing_key_token",
    )
    return CompiledQuery(
        lambda now: _claimable().filter(_pending(now)).values_list(*columns)[:limit],
        stand_ins=[STAND_IN_MOMENT],
        fields=[_NEXT_ATTEMPT_AT],
    )


def _claimed_row(values: tuple) -> Delivery:
    """A delivery and its destination from a row of _due_pending(), as select_related() makes."""
    split = len(_DELIVERY_COLUMNS)
    delivery = Delivery.from_db(DEFAULT_DB_ALIAS, _DELIVERY_COLUMNS, values[:split])
    destination = Destination.from_db(
        DEFAULT_DB_ALIAS, _DESTINATION_COLUMNS, (delivery.destination_id, *values[split:-1])
    )
    Delivery._meta.get_field("destination").set_cached_value(delivery, destination)
    delivery.routing_key_token = values[-1]
    return delivery


# A worker claims up to twice as many rows as it has threads, so a claimed row may wait for one
# send (bounded by the destination's timeout, a total deadline in the client) before its own
# send starts; its lease covers both sends, then the margin for recording the answer.
LEASE_SENDS = 2


def lease_seconds(timeout_seconds: float) -> float:
    """How long a claimed delivery stays with its worker before another may take it up."""
    return LEASE_SENDS * timeout_seconds + settings.DELIVERY_LEASE_MARGIN_SECONDS


def claim_due(*, limit: int, now: datetime | None = None) -> list[Claim]:
    """Lease up to `limit` due deliveries, within each destination's send budget.

    On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so concurrent workers on any
    host pass over each other's rows; SQLite's IMMEDIATE transactions serialise claimers instead.
    """
    now = now or timezone.now()
    if limit <= 0:
        return []
    with transaction.atomic():
        _in_due_order()
        claimed: list[Delivery] = []
        # Rows over their destination's budget are pushed back (no longer due), so selecting
        # again finds the next candidates; each pass claims or defers at least one row.
        while len(claimed) < limit:
            wanted = limit - len(claimed)
            rows = _select_due(now, limit=wanted, skip=[row.pk for row in claimed])
            if not rows:
                break
            found = len(rows)
            # A resolve whose incident was triggered through a key rotated since is finished
            # unsent (PagerDuty would drop it); it leaves the due rows, so the loop moves on.
            rows = void_resolves_through_replaced_keys(rows, now=now)
            allowed = _within_budget(rows, now)
            claimed += allowed
            # Fewer due than asked for, and every one taken: there is nothing more to find.
            # Looking again cost two queries on nearly every claim of a worker keeping up. A
            # row voided or deferred may have let another through (a later event of its
            # incident; a send budget made again), so then the claim looks again.
            if found < wanted and len(allowed) == found:
                break
        if not claimed:
            return []
        _log_lost_leases([row for row in claimed if row.status == DeliveryStatus.SENDING], now)
        token = uuid.uuid4()
        _lease(claimed, token=token, now=now)
    for row in claimed:
        row.status, row.lease_token = DeliveryStatus.SENDING, token
        row.attempts += 1
        row.total_attempts += 1
    return [Claim(delivery=row, lease_token=token) for row in claimed]


def _in_due_order() -> None:
    """On PostgreSQL, have this transaction's claim walk the due index in order and stop early.

    The planner goes by the table's statistics, which lag behind it: on a new site, after a
    restore, in a burst before autovacuum looks again. Told that almost nothing is pending, it
    read a burst whole, ran each row's order check, sorted them and kept the few rows taken:
    8.6 ms a claim of 8 with 1,500 due, growing with the burst (bench `postgres`). Read from
    delivery_due_in_order, which holds them in the claim's order, the same claim reads the rows
    it takes and stops (0.1 ms). With sorting off for this transaction the planner takes that
    path whatever its estimates; where nothing else gives the order it still sorts. SQLite's
    planner already reads the index in order.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_sort = off")


def _lease(rows: list[Delivery], *, token: uuid.UUID, now: datetime) -> None:
    """Mark the rows sending under this worker's lease, counting the attempt: one statement for
    each lease length (destinations' timeouts).

    Plain SQL, as in _update_each() (attempts.py): QuerySet.update() cost the claim 0.5 ms of
    CPU to build for each lease length (bench `throughput`). Names come from _meta, quoted by
    the backend; every value is a parameter, prepared by its field.
    """
    meta = Delivery._meta
    quote = connection.ops.quote_name
    status, lease_token, expires, attempts, total = (
        quote(meta.get_field(name).column)
        for name in ("status", "lease_token", "lease_expires_at", "attempts", "total_attempts")
    )
    by_timeout = defaultdict(list)
    for row in rows:
        by_timeout[row.destination.timeout_seconds].append(row.pk)
    prepared_token = meta.get_field("lease_token").get_db_prep_save(token, connection)
    prepare_moment = meta.get_field("lease_expires_at").get_db_prep_save
    with connection.cursor() as cursor:
        for timeout, ids in by_timeout.items():
            expires_at = now + timedelta(seconds=lease_seconds(timeout))
            cursor.execute(
                f"UPDATE {quote(meta.db_table)} SET {status} = %s, {lease_token} = %s, "  # noqa: S608
                f"{expires} = %s, {attempts} = {attempts} + 1, {total} = {total} + 1 "
                f"WHERE {quote(meta.pk.column)} IN ({', '.join(['%s'] * len(ids))})",
                [
                    DeliveryStatus.SENDING.value,
                    prepared_token,
                    prepare_moment(expires_at, connection),
                    *ids,
                ],
            )


def _within_budget(rows: list[Delivery], now: datetime) -> list[Delivery]:
    """The rows the destinations' budgets allow now; the others become due when a token is."""
    granted = take_tokens(Counter(row.destination_id for row in rows), now=now)
    taken: Counter = Counter()
    allowed_rows, deferred = [], defaultdict(list)
    for row in rows:
        allowed, wait_seconds = granted[row.destination_id]
        if taken[row.destination_id] < allowed:
            taken[row.destination_id] += 1
            allowed_rows.append(row)
        else:
            deferred[wait_seconds].append(row.pk)
    for wait_seconds, ids in deferred.items():
        # Not counted as an attempt: nothing was sent.
        Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now + timedelta(seconds=wait_seconds),
            lease_expires_at=None,
            lease_token=None,
        )
    return allowed_rows


def _log_lost_leases(rows: list[Delivery], now: datetime) -> None:
    """Record the attempt a stopped worker never finished, so the log shows it."""
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=row,
                number=row.total_attempts,
                started_at=row.lease_expires_at
                - timedelta(seconds=lease_seconds(row.destination.timeout_seconds)),
                result=DeliveryAttempt.Result.RETRY,
                error=LOST_LEASE_ERROR,
            )
            for row in rows
        ]
    )
