"""The daily housekeeping (roll up past days, then prune), run by one worker at a time.

The lease is one row of Housekeeping, taken with a compare-and-set UPDATE (`… WHERE
next_run_at <= now`), which PostgreSQL and SQLite both do atomically: of any number of workers
on any number of hosts, the one whose UPDATE matched runs the job; the others skip it until the
next day. While it runs, running_until keeps a manual `prune_deliveries` from running alongside;
a run that dies leaves it to expire.
"""

import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connections
from django.db.models import Q
from django.utils import timezone

from ..models import Housekeeping
from .prune import DEFAULT_BATCH_SIZE, PruneReport, prune_deliveries
from .rollups import HOUSEKEEPING, RollupReport, roll_up_past_days

logger = logging.getLogger("destinations.retention")

INTERVAL = timedelta(days=1)
# How long a run holds the lease without news; every batch renews it.
HOLD = timedelta(minutes=15)
# An idle worker looks at the schedule at least this often (another host may have run it).
CHECK_AT_MOST_EVERY = timedelta(hours=1)


def holder_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def _lease_row(now: datetime) -> None:
    """Create the lease's row, due at once, on the first claim of an installation."""
    # Another worker may create it at the same moment.
    with contextlib.suppress(IntegrityError):
        Housekeeping.objects.get_or_create(name=HOUSEKEEPING, defaults={"next_run_at": now})


def _not_running(now: datetime) -> Q:
    return Q(running_until__isnull=True) | Q(running_until__lt=now)


def claim(*, holder: str, now: datetime | None = None, due_only: bool = True) -> bool:
    """Take the lease if the job is due (or, not due_only, whenever no run holds it)."""
    now = now or timezone.now()
    _lease_row(now)
    rows = Housekeeping.objects.filter(_not_running(now), name=HOUSEKEEPING)
    changes = {"running_until": now + HOLD, "holder": holder, "last_started_at": now}
    if due_only:
        rows = rows.filter(next_run_at__lte=now)
        changes["next_run_at"] = now + INTERVAL
    return rows.update(**changes) == 1


def renew(*, holder: str) -> None:
    Housekeeping.objects.filter(name=HOUSEKEEPING, holder=holder).update(
        running_until=timezone.now() + HOLD
    )


def release(*, holder: str, result: str, failed: bool = False) -> None:
    """Give the lease back; a failed daily run is due again in an hour rather than a day."""
    changes = {"running_until": None, "last_finished_at": timezone.now(), "last_result": result}
    if failed:
        changes["next_run_at"] = timezone.now() + CHECK_AT_MOST_EVERY
    Housekeeping.objects.filter(name=HOUSEKEEPING, holder=holder).update(**changes)


def lease_holder() -> tuple[str, datetime | None]:
    """Who holds the lease and until when (for a refusal's message)."""
    row = Housekeeping.objects.filter(name=HOUSEKEEPING).values_list("holder", "running_until")
    return next(iter(row), ("", None))


@dataclass
class HousekeepingReport:
    rollups: RollupReport
    pruned: PruneReport

    def __str__(self) -> str:
        return f"{self.rollups}; {self.pruned}"


def run_housekeeping(
    *,
    holder: str,
    retention_days: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress=None,
    should_stop=lambda: False,
) -> HousekeepingReport:
    """Roll up the past days first (so no row is pruned before it is counted), then prune."""
    rollups = roll_up_past_days(progress=progress)
    pruned = prune_deliveries(
        retention_days=settings.DELIVERY_RETENTION_DAYS
        if retention_days is None
        else retention_days,
        batch_size=batch_size,
        progress=progress,
        should_stop=should_stop,
        after_batch=lambda: renew(holder=holder),
    )
    return HousekeepingReport(rollups, pruned)


class Housekeeper(threading.Thread):
    """The worker's background thread: the daily housekeeping when this worker wins the lease.

    A thread of its own, with its own database connection, so a long prune never delays a page.
    """

    def __init__(self, *, once: bool = False) -> None:
        super().__init__(name="housekeeping", daemon=True)
        self.once = once
        self.holder = holder_name()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Stop at the next batch; what was pruned stays pruned."""
        self._stopping.set()

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                self.run_if_due()
                if self.once:
                    return
                self._stopping.wait(self._seconds_to_next_check())
        finally:
            connections.close_all()  # this thread's own connections only

    def run_if_due(self) -> HousekeepingReport | None:
        """Run the job if it is due and this worker won the lease; never raises."""
        try:
            if not claim(holder=self.holder):
                return None
        except Exception:
            logger.exception("housekeeping.claim_failed")
            return None
        logger.info("housekeeping.started holder=%s", self.holder)
        try:
            report = run_housekeeping(holder=self.holder, should_stop=self._stopping.is_set)
        except Exception as error:
            logger.exception("housekeeping.failed")
            try:
                release(holder=self.holder, result=f"failed: {error}", failed=True)
            except Exception:
                logger.exception("housekeeping.release_failed")
            return None
        release(holder=self.holder, result=str(report))
        logger.info(
            "housekeeping.finished rolled_up_days=%d pruned=%d attempts=%d seconds=%.1f",
            len(report.rollups.days),
            report.pruned.deleted,
            report.pruned.attempts_deleted,
            report.pruned.seconds,
        )
        return report

    def _seconds_to_next_check(self) -> float:
        try:
            next_run = Housekeeping.objects.filter(name=HOUSEKEEPING).values_list(
                "next_run_at", flat=True
            )
            due = next(iter(next_run), None)
        except Exception:
            logger.exception("housekeeping.schedule_unreadable")
            due = None
        if due is None:
            return CHECK_AT_MOST_EVERY.total_seconds()
        wait = (due - timezone.now()).total_seconds() + 1
        return min(max(wait, 5.0), CHECK_AT_MOST_EVERY.total_seconds())
