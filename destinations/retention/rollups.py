"""Daily rollups: each past day's deliveries per destination, counted before they can be pruned.

A day is rolled up from its raw rows, grouped in the database, one day at a time (the reads are
bounded by one day's deliveries, through the (destination, created_at) index). A day is rolled up
again while its rows can still change: when some were unfinished at the time, or finished, or
were added, since the last pass. Existing installations get every past day rolled up on the
first pass (the backfill).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..health import daily_counts, latency_histograms
from ..models import (
    FINISHED,
    UNFINISHED,
    DailyRollup,
    Delivery,
    Destination,
    Housekeeping,
    RolledUpDay,
)

logger = logging.getLogger("destinations.retention")

# The one row of Housekeeping: the daily job's lease and the rollups' progress.
HOUSEKEEPING = "daily"


@dataclass
class RollupReport:
    """What a rollup pass did."""

    days: list[date] = field(default_factory=list)

    def __str__(self) -> str:
        if not self.days:
            return "no day to roll up"
        if len(self.days) == 1:
            return f"rolled up {self.days[0]}"
        return f"rolled up {len(self.days)} days ({self.days[0]} to {self.days[-1]})"


def local_midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def housekeeping_state() -> Housekeeping:
    state, _ = Housekeeping.objects.get_or_create(name=HOUSEKEEPING)
    return state


def roll_up_past_days(
    *, now: datetime | None = None, progress: Callable[[str], None] | None = None
) -> RollupReport:
    """Roll up every past day that has none yet, or whose deliveries changed since its rollup."""
    now = now or timezone.now()
    state = housekeeping_state()
    # Taken before anything is read: a row that finishes during the pass is seen by the next.
    started = timezone.now()
    max_id = Delivery.objects.aggregate(top=Max("pk"))["top"] or 0
    report = RollupReport(days=days_to_roll_up(state, today=timezone.localdate(now)))
    destination_ids = list(Destination.objects.values_list("pk", flat=True))
    for number, day in enumerate(report.days, start=1):
        roll_up_day(day, destination_ids=destination_ids, rolled_up_at=started)
        if progress and (number % 30 == 0 or number == len(report.days)):
            progress(f"Rolled up {number:,} of {len(report.days):,} days…")
    Housekeeping.objects.filter(pk=state.pk).update(rolled_up_at=started, rolled_up_max_id=max_id)
    if report.days:
        logger.info("retention.rolled_up days=%d", len(report.days))
    return report


def days_to_roll_up(state: Housekeeping, *, today: date) -> list[date]:
    """The past days to roll up now, oldest first."""
    before_today = Delivery.objects.filter(created_at__lt=local_midnight(today)).order_by()
    last = RolledUpDay.objects.aggregate(last=Max("day"))["last"]
    if state.rolled_up_at is None or last is None:
        # The first pass (a new or an upgraded installation), or no past day rolled up yet:
        # every day since the first delivery. One read of the log's oldest row.
        first = before_today.aggregate(first=Min("created_at"))["first"]
        if first is None:
            return []
        start = timezone.localdate(first)
        return [start + timedelta(days=n) for n in range((today - start).days)]
    days = {last + timedelta(days=n) for n in range(1, (today - last).days)}
    # Rows that may have changed since the last pass: unfinished ones (through the status
    # indexes), those finished since (delivery_finished) and new ids (the primary key), which
    # is about one day's deliveries, not the log.
    changed = before_today.filter(
        Q(status__in=UNFINISHED)
        | Q(status__in=FINISHED, finished_at__gte=state.rolled_up_at)
        | Q(pk__gt=state.rolled_up_max_id)
    )
    days.update(
        changed.annotate(day=TruncDate("created_at")).values_list("day", flat=True).distinct()
    )
    days.update(RolledUpDay.objects.filter(unfinished__gt=0).values_list("day", flat=True))
    return sorted(day for day in days if day < today)


def roll_up_day(day: date, *, destination_ids: list[int], rolled_up_at: datetime) -> None:
    """Count one past day's deliveries per destination and store them, replacing any earlier."""
    start, end = local_midnight(day), local_midnight(day + timedelta(days=1))
    # destination_id IN (...) lets both databases read the day through delivery_recent.
    rows = Delivery.objects.filter(
        destination_id__in=destination_ids, created_at__gte=start, created_at__lt=end
    ).order_by()
    counts = daily_counts(rows, [start, end])
    latencies = latency_histograms(rows)
    unfinished = rows.filter(status__in=UNFINISHED).aggregate(n=Count("pk"))["n"]
    rollups = []
    for destination_id, entry in counts.items():
        [figures] = entry.days
        latency = latencies.get(destination_id)
        rollups.append(
            DailyRollup(
                destination_id=destination_id,
                day=day,
                delivered=figures.delivered,
                failed=figures.failed,
                other=figures.other,
                tests=figures.tests,
                pages_delivered=entry.pages_delivered,
                pages_failed=entry.pages_failed,
                latency=latency.to_json() if latency else {},
            )
        )
    with transaction.atomic():
        DailyRollup.objects.filter(day=day).delete()
        DailyRollup.objects.bulk_create(rollups)
        RolledUpDay.objects.update_or_create(
            day=day, defaults={"rolled_up_at": rolled_up_at, "unfinished": unfinished}
        )
