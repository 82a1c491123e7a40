"""What GET /metrics exports: the database's tallies and queue, read by one Collector per scrape.

Why counters in the database, read at scrape time, rather than prometheus_client's counters in
each process: the figures are changed by any number of gunicorn processes and delivery workers on
any number of hosts, and whichever web process Prometheus reaches must answer with the same
totals. Tally rows (destinations/tallies.py), added to in the transaction that stores the change,
give that without a multiprocess directory shared by every process on one host (which workers on
other hosts could not share at all), survive restarts, and outlive the pruning of the delivery
log. A scrape costs six queries whatever the number of deliveries stored: the tallies grow with
the destinations only, and the queue is read over unfinished rows only (the
delivery_due_in_order and delivery_lease indexes lead with the status).
"""

from collections.abc import Iterator
from datetime import datetime

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from detections.models import Outcome, RunOutcomeTally

from .health import PAGES
from .models import (
    FINISHED,
    UNFINISHED,
    AttemptDurationTally,
    Delivery,
    DeliveryKind,
    DeliveryOutcomeTally,
    Destination,
    RateLimitedTally,
)
from .tallies import BUCKET_LABELS

PREFIX = "detection_destinations"


class DeliveryMetrics(Collector):
    """The product's metrics, read from the database at each scrape."""

    def collect(self) -> Iterator[Metric]:
        # Every destination's series are exported, at zero until something happens, so that
        # rate() and increase() see a destination's first failure (a series that appears with
        # its first increment has no earlier sample to compare with). By name, never by key.
        names = dict(Destination.objects.order_by("name").values_list("pk", "name"))
        yield deliveries_total(names)
        yield attempt_duration(names)
        yield rate_limited_total(names)
        yield from queue_figures(now=timezone.now())
        yield runs_total()


def deliveries_total(names: dict[int, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        f"{PREFIX}_deliveries",
        "Deliveries that reached a final status (delivered or failed), by destination, kind "
        "(trigger, resolve, or test: a test alert or its resolve) and outcome.",
        labels=["destination", "kind", "outcome"],
    )
    counts = {
        (destination_id, kind, outcome): count
        for destination_id, kind, outcome, count in DeliveryOutcomeTally.objects.values_list(
            "destination_id", "kind", "outcome", "count"
        )
    }
    for destination_id, name in names.items():
        for kind in DeliveryKind.values:
            for outcome in FINISHED:
                value = counts.get((destination_id, kind, str(outcome)), 0)
                family.add_metric([name, kind, str(outcome)], value)
    return family


def attempt_duration(names: dict[int, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        f"{PREFIX}_attempt_duration_seconds",
        "How long each attempt to send a page to PagerDuty took (test alerts left out).",
        labels=["destination"],
    )
    buckets: dict[int, dict[str, tuple[int, int]]] = {pk: {} for pk in names}
    for destination_id, le, count, duration_ms in AttemptDurationTally.objects.values_list(
        "destination_id", "le", "count", "duration_ms"
    ):
        if destination_id in buckets:
            buckets[destination_id][le] = (count, duration_ms)
    for destination_id, name in names.items():
        tallies = buckets[destination_id]
        cumulative, total_ms, series = 0, 0, []
        for label in BUCKET_LABELS:
            count, duration_ms = tallies.get(label, (0, 0))
            cumulative += count
            total_ms += duration_ms
            series.append((label, cumulative))
        family.add_metric([name], series, sum_value=total_ms / 1000)
    return family


def rate_limited_total(names: dict[int, str]) -> CounterMetricFamily:
    family = CounterMetricFamily(
        f"{PREFIX}_rate_limited",
        "Attempts to send a page that PagerDuty answered 429 (rate limited), by destination.",
        labels=["destination"],
    )
    counts = dict(RateLimitedTally.objects.values_list("destination_id", "count"))
    for destination_id, name in names.items():
        family.add_metric([name], counts.get(destination_id, 0))
    return family


def queue_figures(*, now: datetime) -> Iterator[GaugeMetricFamily]:
    """The unfinished pages by status, and how long the oldest has waited (as /healthz)."""
    rows = (
        Delivery.objects.filter(PAGES, status__in=UNFINISHED)
        .order_by()
        .values("status")
        .annotate(count=Count("pk"), oldest=Min("queued_at"))
    )
    by_status = {row["status"]: row for row in rows}
    queue = GaugeMetricFamily(
        f"{PREFIX}_queue",
        "Pages not yet delivered or failed, by status: pending (waiting to be due or for a "
        "worker) or sending (claimed by a worker). Test alerts left out.",
        labels=["status"],
    )
    for status in UNFINISHED:
        queue.add_metric([str(status)], by_status.get(status, {}).get("count", 0))
    yield queue
    # queued_at, as /healthz: "Retry now" re-queues, and the age limit counts from there.
    oldest = min((row["oldest"] for row in by_status.values()), default=None)
    age = 0.0 if oldest is None else max((now - oldest).total_seconds(), 0.0)
    yield GaugeMetricFamily(
        f"{PREFIX}_oldest_pending_age_seconds",
        "How long the oldest unfinished page has waited since it was queued (0 when none).",
        value=age,
    )


def runs_total() -> CounterMetricFamily:
    family = CounterMetricFamily(
        f"{PREFIX}_runs",
        "Detection runs recorded (a repeated run_id is not counted again), by outcome.",
        labels=["outcome"],
    )
    counts = dict(RunOutcomeTally.objects.values_list("outcome", "count"))
    for outcome in Outcome.values:
        family.add_metric([outcome], counts.get(outcome, 0))
    return family


def metrics_registry() -> CollectorRegistry:
    """A registry of the product's metrics only: no per-process figures (each gunicorn process
    would answer with its own), nothing read until a scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DeliveryMetrics())
    return registry
