"""Read-side delivery figures: the queue's health, and each destination's in nine queries."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import reduce
from operator import or_
from typing import NamedTuple

from django.core.paginator import Page, Paginator
from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    Min,
    OuterRef,
    Q,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.utils import timezone

from .models import (
    UNFINISHED,
    DailyRollup,
    Delivery,
    DeliveryKind,
    DeliveryStatus,
    Destination,
    RolledUpDay,
)
from .retention.latency import Histogram, histograms
from .services import TEST_DEDUP_PREFIX

WINDOW_DAYS = 14
RECENT = timedelta(hours=24)
# As the admin's own lists: beyond this a page of charts gets slow to build and to read.
DESTINATIONS_PER_PAGE = 100
# Latency percentiles shown, as whole percents; nearest rank over the days' latency histograms
# (destinations/retention/latency.py), so past days count after their rows are pruned.
LATENCY_PERCENTILES = (50, 95)

# Pages and tests are counted apart everywhere (the health page and /healthz): a test alert, or
# its resolve, never makes a destination look healthy or unhealthy. A test is a delivery of kind
# `test` or any delivery of a test's dedup key: the resolve sent right after a test, or queued
# when "Retry now" re-sends one, is kind `resolve` like a detection's. Telling them by key rather
# than by "has a run" keeps a page a page when its run is deleted (the run link is SET_NULL), and
# a detection's resolves and fallbacks, which carry the detection's SHA-256 hex key, pages. Hex
# has no "t", so no real dedup key starts with the test prefix.
TESTS = Q(kind=DeliveryKind.TEST) | Q(dedup_key__startswith=TEST_DEDUP_PREFIX)
# Detection runs' triggers and resolves: success rate and latency describe these only. A test's
# latency is one HTTP call from the admin, not a trip through the queue, and a key rotation logs a
# refused test when the *new* key is wrong, which says nothing about the destination's pages.
PAGES = ~TESTS
# The same test, as a column of a row read for display.
IS_TEST = ExpressionWrapper(TESTS, output_field=BooleanField())
DELIVERED = Q(status=DeliveryStatus.DELIVERED)
# A failure counts until the delivery is delivered. "Retry now" puts a failed delivery back to
# pending but keeps its finished_at (when it failed), which no other unfinished row has; so a
# re-queued failure, and a retry of it that is waiting again after a 5xx, still counts here.
# finished_at is when it failed last: the last failure a destination shows.
FAILED = Q(status=DeliveryStatus.FAILED) | Q(status__in=UNFINISHED, finished_at__isnull=False)
# Unfinished and never failed: queued, or between the retries of its first go.
QUEUED = Q(status__in=UNFINISHED, finished_at__isnull=True)


class DayCount(NamedTuple):
    """Deliveries created on one day, by how they ended (tests included, and counted apart)."""

    # A named tuple: cheap to build, and the page builds one per destination and day.
    day: date
    delivered: int = 0
    failed: int = 0
    other: int = 0  # pending or sending, and never failed (a re-queued failure is `failed`)
    tests: int = 0  # test alerts and their resolves, among the counts above

    @property
    def total(self) -> int:
        return self.delivered + self.failed + self.other


@dataclass(frozen=True)
class PendingDelivery:
    """The oldest unfinished delivery of a destination, and how many are unfinished."""

    id: int
    status: str
    kind: str
    is_test: bool  # a test alert or its resolve
    queued_at: datetime
    age: timedelta
    unfinished: int


@dataclass(frozen=True)
class Failure:
    """The last failed delivery of a destination, with PagerDuty's answer."""

    id: int
    kind: str
    is_test: bool  # a test alert or its resolve
    finished_at: datetime
    status_code: int | None
    message: str
    errors: list
    error: str


@dataclass(frozen=True)
class DestinationHealth:
    """One destination's figures over the window."""

    id: int
    name: str
    enabled: bool
    days: list[DayCount]
    delivered: int  # pages (no tests) delivered in the window
    failed: int  # pages (no tests) failed in the window
    tests: int  # test alerts and their resolves in the window, however they ended
    p50_ms: int | None
    p95_ms: int | None
    oldest_pending: PendingDelivery | None
    last_failure: Failure | None

    @property
    def total(self) -> int:
        return sum(day.total for day in self.days)

    @property
    def pages(self) -> int:
        return self.total - self.tests

    @property
    def success_rate(self) -> float | None:
        """Delivered pages as a percent of the finished ones, or None if none ended."""
        finished = self.delivered + self.failed
        return 100.0 * self.delivered / finished if finished else None


@dataclass(frozen=True)
class QueueFigures:
    """Counts of the delivery queue across all destinations, for pages or for tests."""

    pending: int  # pending or sending now
    oldest_pending_age: timedelta | None  # since the oldest unfinished one was (re)queued
    failed_recently: int  # in the last RECENT (24 hours)
    delivered_recently: int | None  # None when not counted (see queue_health)


@dataclass(frozen=True)
class QueueHealth(QueueFigures):
    """Pages' figures, and tests' apart: what the health page and /healthz show."""

    tests: QueueFigures


@dataclass(frozen=True)
class HealthReport:
    """Everything the health page shows."""

    now: datetime
    days: list[date]
    since: datetime
    totals: QueueHealth
    destinations: list[DestinationHealth]  # this page's
    page: Page  # of all destinations, by name


class LatencyMs(Func):
    """Milliseconds from created_at to delivered_at, computed by the database itself."""

    # Django's portable datetime subtraction calls a Python function per row on SQLite;
    # julianday() is native there, as EXTRACT(EPOCH …) is on PostgreSQL.
    template = "CAST(EXTRACT(EPOCH FROM (%(expressions)s)) AS DOUBLE PRECISION) * 1000"
    arg_joiner = " - "
    output_field = FloatField()

    def __init__(self) -> None:
        super().__init__(F("delivered_at"), F("created_at"))

    def as_sqlite(self, compiler, connection, **extra_context):
        return super().as_sql(
            compiler,
            connection,
            template="(julianday(%(expressions)s)) * 86400000.0",
            arg_joiner=") - julianday(",
            **extra_context,
        )


def day_starts(*, now: datetime, days: int) -> list[datetime]:
    """Local midnight of each of the last `days` days, oldest first, and of the day after."""
    today = timezone.localdate(now)
    zone = timezone.get_current_timezone()
    return [
        datetime.combine(today - timedelta(days=days - 1 - offset), time.min, tzinfo=zone)
        for offset in range(days + 1)
    ]


def delivery_health(
    *,
    now: datetime | None = None,
    days: int = WINDOW_DAYS,
    page: int | str | None = 1,
    per_page: int = DESTINATIONS_PER_PAGE,
) -> HealthReport:
    """Figures for one page of destinations over the last `days` days, in nine queries.

    Past days come from their daily rollups (destinations/retention/rollups.py) once rolled up;
    only today, and a past day not rolled up yet (or rolled up while some of its deliveries were
    unfinished), are read from the delivery log. So the page costs the same however many
    deliveries are stored, and its history outlives pruning.
    """
    now = now or timezone.now()
    starts = day_starts(now=now, days=days)
    since = starts[0]
    day_list = [start.date() for start in starts[:-1]]
    # Every destination's name is one small query; only the page's destinations get figures,
    # so the work per request stays the same however many destinations there are.
    destination_page = Paginator(
        list(Destination.objects.order_by("name", "pk").values_list("pk", "name", "enabled")),
        per_page,
    ).get_page(page)
    ids = [pk for pk, _, _ in destination_page.object_list]
    destinations = []
    if ids:
        deliveries = Delivery.objects.filter(destination_id__in=ids).order_by()
        rolled_up = rolled_up_days(day_list[:-1])
        raw = deliveries.filter(_created_on(starts, [day not in rolled_up for day in day_list]))
        daily = daily_counts(raw, starts)
        latencies = latency_histograms(raw)
        _add_rollups(daily, latencies, ids=ids, days=rolled_up, day_list=day_list)
        pending = _oldest_pending(now=now)
        failures = _last_failures(ids, since=since)
        # Destinations without deliveries share one list of empty days.
        empty_days = [DayCount(day) for day in day_list]
        for pk, name, enabled in destination_page.object_list:
            counts = daily.get(pk)
            latency = latencies.get(pk) or Histogram()
            p50, p95 = (latency.percentile(p) for p in LATENCY_PERCENTILES)
            destinations.append(
                DestinationHealth(
                    id=pk,
                    name=name,
                    enabled=enabled,
                    days=counts.days if counts else empty_days,
                    delivered=counts.pages_delivered if counts else 0,
                    failed=counts.pages_failed if counts else 0,
                    tests=counts.tests if counts else 0,
                    p50_ms=None if p50 is None else round(p50),
                    p95_ms=None if p95 is None else round(p95),
                    oldest_pending=pending.get(pk),
                    last_failure=failures.get(pk),
                )
            )
    return HealthReport(
        now=now,
        days=day_list,
        since=since,
        totals=queue_health(now=now),
        destinations=destinations,
        page=destination_page,
    )


def rolled_up_days(days: list[date]) -> set[date]:
    """Which of these past days to read from rollups: those rolled up with nothing unfinished."""
    return set(RolledUpDay.objects.filter(day__in=days, unfinished=0).values_list("day", flat=True))


def _created_on(starts: list[datetime], chosen: list[bool]) -> Q:
    """Created on the chosen days (runs of adjacent days as one range each)."""
    ranges: list[list[datetime]] = []
    for index, pick in enumerate(chosen):
        if not pick:
            continue
        if ranges and ranges[-1][1] == starts[index]:
            ranges[-1][1] = starts[index + 1]
        else:
            ranges.append([starts[index], starts[index + 1]])
    return reduce(or_, (Q(created_at__gte=low, created_at__lt=high) for low, high in ranges))


def _add_rollups(
    daily: "dict[int, DayCounts]",
    latencies: dict[int, Histogram],
    *,
    ids: list[int],
    days: set[date],
    day_list: list[date],
) -> None:
    """Add the rolled-up days of these destinations to the counts and latencies read raw."""
    position = {day: index for index, day in enumerate(day_list)}
    rows = DailyRollup.objects.filter(destination_id__in=ids, day__in=days).values_list(
        "destination_id",
        "day",
        "delivered",
        "failed",
        "other",
        "tests",
        "pages_delivered",
        "pages_failed",
        "latency",
    )
    for destination_id, day, delivered, failed, other, tests, pages_ok, pages_failed, hist in rows:
        entry = daily.get(destination_id)
        if entry is None:
            entry = daily[destination_id] = DayCounts(days=[DayCount(when) for when in day_list])
        entry.days[position[day]] = DayCount(day, delivered, failed, other, tests)
        entry.pages_delivered += pages_ok
        entry.pages_failed += pages_failed
        entry.tests += tests
        if hist:
            latencies.setdefault(destination_id, Histogram()).merge(Histogram.from_json(hist))


@dataclass
class DayCounts:
    """One destination's per-day counts and its totals over the window, while they add up."""

    days: list[DayCount]
    pages_delivered: int = 0
    pages_failed: int = 0
    tests: int = 0


def daily_counts(in_window, starts: list[datetime]) -> dict[int, DayCounts]:
    """Counts per destination and day, grouped in the database."""
    day_list = [start.date() for start in starts[:-1]]
    # Day buckets are a CASE over precomputed midnights rather than TruncDate: on SQLite,
    # TruncDate runs a Python function for every row, while these are plain comparisons, and the
    # midnights already follow the current time zone on every database.
    day_index = Case(
        *(
            When(created_at__lt=start, then=Value(index))
            for index, start in enumerate(starts[1:-1])
        ),
        default=Value(len(day_list) - 1),
    )
    rows = (
        in_window.annotate(day=day_index)
        .values_list("destination_id", "day")
        .annotate(
            delivered=Count("pk", filter=DELIVERED),
            failed=Count("pk", filter=FAILED),
            other=Count("pk", filter=QUEUED),
            tests=Count("pk", filter=TESTS),
            pages_delivered=Count("pk", filter=DELIVERED & PAGES),
            pages_failed=Count("pk", filter=FAILED & PAGES),
        )
    )
    counts: dict[int, DayCounts] = {}
    for (
        destination_id,
        day,
        delivered,
        failed,
        other,
        tests,
        pages_delivered,
        pages_failed,
    ) in rows:
        entry = counts.get(destination_id)
        if entry is None:
            entry = counts[destination_id] = DayCounts(days=[DayCount(when) for when in day_list])
        entry.days[day] = DayCount(day_list[day], delivered, failed, other, tests)
        entry.pages_delivered += pages_delivered
        entry.pages_failed += pages_failed
        entry.tests += tests
    return counts


def latency_histograms(deliveries) -> dict[int, Histogram]:
    """Per destination, the latency histogram of the delivered pages among `deliveries`."""
    # delivered_at is set exactly when a delivery is delivered; filtering on it rather than on
    # status lets the database read the page's rows through the (destination, created_at) index.
    return histograms(deliveries.filter(PAGES, delivered_at__isnull=False), LatencyMs())


def _oldest_pending(*, now: datetime) -> dict[int, PendingDelivery]:
    """Each destination's oldest unfinished delivery and its count of unfinished ones."""
    # queued_at, as in queue_health: "Retry now" re-queues a delivery and its age counts from there.
    # Every destination's, not only the page's: filtered by destination, SQLite would read the
    # page's destinations' whole log (delivery_recent) to find the few unfinished rows, where the
    # status indexes read the queue alone, whose size does not grow with the log.
    rows = (
        Delivery.objects.filter(status__in=UNFINISHED)
        .order_by()
        .annotate(
            rank=Window(
                RowNumber(),
                partition_by=F("destination_id"),
                order_by=[F("queued_at").asc(), F("pk").asc()],
            ),
            unfinished=Window(Count("pk"), partition_by=F("destination_id")),
            is_test=IS_TEST,
        )
        .filter(rank=1)
        .values_list("destination_id", "pk", "status", "kind", "is_test", "queued_at", "unfinished")
    )
    return {
        destination_id: PendingDelivery(
            id=pk,
            status=status,
            kind=kind,
            is_test=bool(is_test),
            queued_at=queued_at,
            age=max(now - queued_at, timedelta(0)),
            unfinished=unfinished,
        )
        for destination_id, pk, status, kind, is_test, queued_at, unfinished in rows
    }


def _last_failures(ids: list[int], *, since: datetime) -> dict[int, Failure]:
    """Each destination's most recent failure in the window, with PagerDuty's answer."""
    # FAILED is three kinds of row: failed, and pending or sending again after a failure (Retry
    # now). The latest of each, per destination, is one probe of the delivery_failures index
    # (destination, status, finished_at), so the cost is the page's destinations, not the
    # failures stored; the latest of the three is the answer. One status per probe: with
    # `status IN (…)` PostgreSQL reads every row of the window to sort them.
    in_window = Delivery.objects.filter(destination_id=OuterRef("pk"), finished_at__gte=since)
    latest = {
        status: Subquery(
            in_window.filter(status=status).order_by("-finished_at", "-pk").values("pk")[:1]
        )
        for status in (DeliveryStatus.FAILED, *UNFINISHED)
    }
    candidates = Destination.objects.filter(pk__in=ids).order_by().annotate(**latest)
    failure_ids = [pk for row in candidates.values_list(*latest) for pk in row if pk is not None]
    rows = (
        Delivery.objects.filter(pk__in=failure_ids)
        .annotate(is_test=IS_TEST)
        .order_by("finished_at", "pk")
        .values_list(
            "destination_id",
            "pk",
            "kind",
            "is_test",
            "finished_at",
            "last_status_code",
            "pagerduty_message",
            "pagerduty_errors",
            "last_error",
        )
    )
    # In order, so a destination's latest replaces its earlier ones.
    return {
        row[0]: Failure(
            id=row[1],
            kind=row[2],
            is_test=bool(row[3]),
            finished_at=row[4],
            status_code=row[5],
            message=row[6],
            errors=row[7] or [],
            error=row[8],
        )
        for row in rows
    }


def queue_health(*, now: datetime, count_delivered: bool = True) -> QueueHealth:
    """The queue across all destinations, pages and tests apart: unfinished now, failed lately.

    One query whatever the split. Counting the delivered reads a day's deliveries (0.5 s of 3
    million rows on PostgreSQL, where the rest takes 15 ms), so /healthz, which monitors call
    every few seconds, leaves it out.
    """
    recent = now - RECENT
    unfinished = Q(status__in=UNFINISHED)
    failed = FAILED & Q(finished_at__gte=recent)
    # A delivered row's finished_at is its delivered_at; on finished_at, the delivery_finished
    # index reads only the last day's rows instead of the whole log.
    delivered = DELIVERED & Q(finished_at__gte=recent)
    read = unfinished | failed
    figures = {}
    for side, which in (("pages", PAGES), ("tests", TESTS)):
        figures[f"{side}_pending"] = Count("pk", filter=unfinished & which)
        # queued_at, not created_at: "Retry now" re-queues, and the age limit counts from there.
        figures[f"{side}_oldest"] = Min("queued_at", filter=unfinished & which)
        figures[f"{side}_failed"] = Count("pk", filter=failed & which)
        if count_delivered:
            figures[f"{side}_delivered"] = Count("pk", filter=delivered & which)
    if count_delivered:
        read |= delivered
    totals = Delivery.objects.filter(read).order_by().aggregate(**figures)

    def side(name: str) -> QueueFigures:
        oldest = totals[f"{name}_oldest"]
        return QueueFigures(
            pending=totals[f"{name}_pending"],
            oldest_pending_age=None if oldest is None else max(now - oldest, timedelta(0)),
            failed_recently=totals[f"{name}_failed"],
            delivered_recently=totals.get(f"{name}_delivered"),
        )

    pages = side("pages")
    return QueueHealth(
        pending=pages.pending,
        oldest_pending_age=pages.oldest_pending_age,
        failed_recently=pages.failed_recently,
        delivered_recently=pages.delivered_recently,
        tests=side("tests"),
    )
