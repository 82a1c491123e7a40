"""Pruning: finished deliveries older than DELIVERY_RETENTION_DAYS go, in short batches.

Django's delete() would load every row (event bodies and all) to cascade in Python; here each
batch is its own short transaction, so the workers delivering meanwhile never wait long on a
lock. On PostgreSQL a batch is one statement (pick the batch along the index, delete the rows
of it that may go, delete their attempts), so no id travels to Python and back; elsewhere it is
a handful of statements over the batch's ids.
"""

import time as clock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db import connection, models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from ..models import FINISHED, Delivery, DeliveryAttempt, DeliveryKind, DeliveryStatus

DEFAULT_BATCH_SIZE = 20_000
RUN_EVENTS = (DeliveryKind.TRIGGER, DeliveryKind.RESOLVE)


class PruneError(Exception):
    """Pruning cannot go on safely (a relation it does not know how to clear)."""


@dataclass
class PruneReport:
    """What a prune did (or, dry, would do)."""

    retention_days: int
    cutoff: datetime
    prunable: int  # finished before the cutoff, counted before the first batch (dry: exactly)
    deleted: int = 0
    attempts_deleted: int = 0
    dry_run: bool = False
    stopped: bool = False
    seconds: float = 0.0
    longest_batch_seconds: float = 0.0  # the longest a batch's transaction held its locks

    def __str__(self) -> str:
        if self.dry_run:
            return (
                f"{self.prunable:,} finished deliveries older than {self.retention_days} days "
                f"(finished before {self.cutoff:%Y-%m-%d %H:%M %Z}) would be pruned; "
                "nothing was deleted (--dry-run)."
            )
        stopped = " Stopped early: run it again to go on." if self.stopped else ""
        kept = self.prunable - self.deleted
        kept = (
            f" {kept:,} kept: the last event of an incident, or a failure whose fallback is "
            "still stored."
            if kept > 0 and not stopped
            else ""
        )
        return (
            f"Pruned {self.deleted:,} deliveries and {self.attempts_deleted:,} attempts "
            f"finished before {self.cutoff:%Y-%m-%d %H:%M %Z} ({self.retention_days} days) "
            f"in {self.seconds:.1f} s (the longest batch {self.longest_batch_seconds:.1f} s)."
            f"{kept}{stopped}"
        )


def prunable(cutoff: datetime):
    """The deliveries that may go: finished before the cutoff, and needed by nothing still kept.

    Kept, however old: unfinished deliveries (pending or sending: never pruned); the last event a
    detection run sent to each destination for an incident (auto-resolve reads whether it was a
    trigger, and which key sent it); a delivery whose fallback is still stored (the fallback's
    link to it says it is a fallback, which keeps fallbacks to one hop). These go once newer
    events, or the fallback, have gone or come. POSTGRES_BATCH states the same rule in SQL:
    change both (the tests in tests/destinations/retention run on either database).
    """
    later_event = Delivery.objects.filter(
        destination_id=OuterRef("destination_id"),
        dedup_key=OuterRef("dedup_key"),
        pk__gt=OuterRef("pk"),
        run__isnull=False,
        kind__in=RUN_EVENTS,
    )
    return (
        Delivery.objects.filter(status__in=FINISHED, finished_at__lt=cutoff)
        .exclude(Q(run__isnull=False, kind__in=RUN_EVENTS) & ~Exists(later_event))
        .exclude(Exists(Delivery.objects.filter(fallback_of=OuterRef("pk"))))
        .order_by()
    )


def prune_deliveries(
    *,
    retention_days: int,
    now: datetime | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    dry_run: bool = False,
    progress: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    after_batch: Callable[[], None] = lambda: None,
) -> PruneReport:
    """Delete the prunable deliveries and their attempts, batch by batch, oldest first."""
    if retention_days < 1:
        raise PruneError(
            f"DELIVERY_RETENTION_DAYS is {retention_days}; it must be a whole number of days, "
            "at least 1."
        )
    started = clock.perf_counter()
    cutoff = (now or timezone.now()) - timedelta(days=retention_days)
    finished_before = Delivery.objects.filter(status__in=FINISHED, finished_at__lt=cutoff)
    report = PruneReport(
        retention_days=retention_days,
        cutoff=cutoff,
        # A dry run counts exactly; a real one counts along the index only (the progress lines'
        # "of N"), as the exact count reads every candidate's neighbours once more.
        prunable=(prunable(cutoff) if dry_run else finished_before).order_by().count(),
        dry_run=dry_run,
    )
    if dry_run or not report.prunable:
        report.seconds = clock.perf_counter() - started
        return report
    children = _child_relations()
    one_statement = connection.vendor == "postgresql" and _one_statement_clears(children)
    for status in FINISHED:
        if one_statement:
            delete_batch = partial(_postgres_batch, status, cutoff=cutoff, children=children)
        else:
            finished = finished_before.filter(status=status).order_by()
            delete_batch = partial(_portable_batch, finished, cutoff=cutoff, children=children)
        # Keyset order over the delivery_finished index (status, finished_at, id): each batch is
        # a range of the index starting where the last ended, so rows kept are read once.
        after: tuple[datetime, int] | None = None
        while not should_stop():
            began = clock.perf_counter()
            after, deleted, attempts = delete_batch(after=after, batch_size=batch_size)
            if after is None:
                break
            report.longest_batch_seconds = max(
                report.longest_batch_seconds, clock.perf_counter() - began
            )
            report.deleted += deleted
            report.attempts_deleted += attempts
            after_batch()
            if progress:
                progress(f"Pruned {report.deleted:,} of {report.prunable:,} deliveries…")
    report.stopped = should_stop()
    report.seconds = clock.perf_counter() - started
    return report


Batch = tuple[tuple[datetime, int] | None, int, int]  # (last key read, deleted, attempts)


def _portable_batch(finished, *, cutoff, children, after, batch_size) -> Batch:
    """One batch on any database: read it along the index, ask its rows, delete those that go."""
    page = finished
    if after is not None:
        page = page.filter(Q(finished_at__gt=after[0]) | Q(finished_at=after[0], pk__gt=after[1]))
    batch = list(page.order_by("finished_at", "pk").values_list("finished_at", "pk")[:batch_size])
    if not batch:
        return None, 0, 0
    # Which rows of the batch may go is asked of those rows only (one index probe each).
    ids = list(prunable(cutoff).filter(pk__in=[pk for _, pk in batch]).values_list("pk", flat=True))
    deleted, attempts = _delete_batch(ids, cutoff=cutoff, children=children)
    return batch[-1], deleted, attempts


# Links that prunable() already keeps from pointing at a pruned row (a fallback's origin stays
# while the fallback does), so clearing them would be a query per batch that changes nothing.
KEPT_BY_PRUNABLE = {"fallback_of"}


def _child_relations() -> list[models.ForeignObjectRel]:
    """Every foreign key pointing at Delivery, each cascading or set null, else a PruneError."""
    relations = []
    for relation in Delivery._meta.related_objects:
        if relation.related_model is Delivery and relation.field.name in KEPT_BY_PRUNABLE:
            continue
        if relation.on_delete not in (models.CASCADE, models.SET_NULL):
            raise PruneError(
                f"{relation.related_model.__name__}.{relation.field.name} points at deliveries "
                f"with on_delete={relation.on_delete.__name__}; pruning does not know whether "
                "those rows may go."
            )
        relations.append(relation)
    return relations


def _delete_batch(
    ids: list[int], *, cutoff: datetime, children: list[models.ForeignObjectRel]
) -> tuple[int, int]:
    """Delete these deliveries if still finished before the cutoff; how many, and attempts."""
    if not ids:
        return 0, 0
    table = connection.ops.quote_name(Delivery._meta.db_table)
    marks = ", ".join(["%s"] * len(ids))
    with transaction.atomic():
        with connection.cursor() as cursor:
            # The status is checked again here: "Retry now" may have made one pending since it
            # was picked, and it then stays. A row a worker holds is unfinished, never picked.
            # Foreign keys are checked at commit (Django creates them deferred on both
            # databases), so the rows pointing here are cleared after, in the same transaction.
            cursor.execute(
                f"DELETE FROM {table} WHERE id IN ({marks}) "  # noqa: S608 (ids are bound)
                "AND status IN (%s, %s) AND finished_at < %s RETURNING id",
                [*ids, *FINISHED, connection.ops.adapt_datetimefield_value(cutoff)],
            )
            deleted = [row[0] for row in cursor.fetchall()]
        attempts = 0
        for relation in children:
            rows = relation.related_model._base_manager.filter(
                **{f"{relation.field.attname}__in": deleted}
            )
            if relation.on_delete is models.SET_NULL:
                rows.update(**{relation.field.attname: None})
            elif relation.on_delete is models.CASCADE:
                # DeliveryAttempt has nothing pointing at it: one DELETE … WHERE delivery_id IN.
                _, by_model = rows.delete()
                attempts += by_model.get(DeliveryAttempt._meta.label, 0)
    return len(deleted), attempts


def _one_statement_clears(children: list[models.ForeignObjectRel]) -> bool:
    """Whether one SQL statement can clear every row pointing at a batch (nothing cascades on)."""
    return all(
        relation.on_delete is models.SET_NULL or not relation.related_model._meta.related_objects
        for relation in children
    )


# One batch on PostgreSQL, one statement: the batch along the index, the rows of it that may go
# (the rule of prunable(), written against the row being deleted), and the rows pointing at
# them. Set-based, the checks are one index probe per row inside the server (no id list sent
# back and forth, no second pass over the batch); and as the attempts go in the same statement,
# the foreign-key checks at commit find nothing left to point at the deliveries.
POSTGRES_BATCH = """
WITH batch AS MATERIALIZED (
    SELECT id, finished_at FROM {delivery}
    WHERE status = %(status)s AND finished_at < %(cutoff)s {after}
    ORDER BY finished_at, id
    LIMIT %(limit)s
),
gone AS (
    DELETE FROM {delivery} AS d
    USING batch
    WHERE d.id = batch.id
      -- Checked again on the row itself: "Retry now" may have made it pending since the batch
      -- was read (PostgreSQL rechecks a row changed meanwhile), and it then stays.
      AND d.status IN (%(delivered)s, %(failed)s) AND d.finished_at < %(cutoff)s
      -- The last event a detection run sent for an incident stays (auto-resolve reads it).
      AND NOT (
          d.run_id IS NOT NULL AND d.kind IN (%(trigger)s, %(resolve)s)
          AND NOT EXISTS (
              SELECT 1 FROM {delivery} AS later
              WHERE later.destination_id = d.destination_id AND later.dedup_key = d.dedup_key
                AND later.id > d.id AND later.run_id IS NOT NULL
                AND later.kind IN (%(trigger)s, %(resolve)s)
          )
      )
      -- A failure whose fallback is still stored stays.
      AND NOT EXISTS (SELECT 1 FROM {delivery} AS f WHERE f.fallback_of_id = d.id)
    RETURNING d.id
){children}
SELECT
    (SELECT finished_at FROM batch ORDER BY finished_at DESC, id DESC LIMIT 1),
    (SELECT id FROM batch ORDER BY finished_at DESC, id DESC LIMIT 1),
    (SELECT count(*) FROM gone),
    {attempts}
"""
# The keyset: past the last row of the previous batch, a range of delivery_finished.
POSTGRES_AFTER = "AND (finished_at, id) > (%(after_at)s, %(after_id)s)"


def _postgres_batch(status, *, cutoff, children, after, batch_size) -> Batch:
    """One batch in one statement and one short transaction (see POSTGRES_BATCH)."""
    # Only table and column names of the models go into the text (quoted); values are bound.
    quote = connection.ops.quote_name
    clears, attempts = [], "0"
    for number, relation in enumerate(children):
        table, column = quote(relation.related_model._meta.db_table), quote(relation.field.column)
        if relation.on_delete is models.SET_NULL:
            clear = f"UPDATE {table} SET {column} = NULL"  # noqa: S608
        else:  # CASCADE to rows nothing points at (_one_statement_clears)
            clear = f"DELETE FROM {table}"  # noqa: S608
        clears.append(
            f",\nchild_{number} AS ({clear} WHERE {column} IN (SELECT id FROM gone) RETURNING 1)"  # noqa: S608
        )
        if relation.related_model is DeliveryAttempt:
            attempts = f"(SELECT count(*) FROM child_{number})"  # noqa: S608
    sql = POSTGRES_BATCH.format(
        delivery=quote(Delivery._meta.db_table),
        after=POSTGRES_AFTER if after else "",
        children="".join(clears),
        attempts=attempts,
    )
    params = {
        "status": status,
        "cutoff": cutoff,
        "limit": batch_size,
        "delivered": DeliveryStatus.DELIVERED,
        "failed": DeliveryStatus.FAILED,
        "trigger": DeliveryKind.TRIGGER,
        "resolve": DeliveryKind.RESOLVE,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # The statement's estimated cost passes jit_above_cost, and compiling it would take
        # longer (tens of ms a batch) than the JIT saves on index probes: off for this one.
        cursor.execute("SET LOCAL jit = off")
        cursor.execute(sql, params)
        last_at, last_id, deleted, attempts_deleted = cursor.fetchone()
    if last_id is None:
        return None, 0, 0
    return (last_at, last_id), deleted, attempts_deleted
