"""The admin's delivery health page: per destination, deliveries per day, success and backlog."""

import math
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.apps import apps
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString

from ..health import DestinationHealth, Failure, delivery_health
from ..models import DeliveryKind
from .chart import daily_chart
from .delivery import may_view_deliveries

# At or above the first a destination reads as healthy; below the second it is flagged red.
SUCCESS_RATE_GOOD = 99.0
SUCCESS_RATE_POOR = 95.0
# PagerDuty's errors and our error text can be long; the delivery's own page has them in full.
ANSWER_MAX_CHARS = 300


@dataclass(frozen=True)
class PendingCell:
    """The oldest unfinished delivery as the page shows it."""

    url: str
    age: str
    queued: str
    note: str


@dataclass(frozen=True)
class FailureCell:
    """The last failure as the page shows it."""

    url: str
    ago: str
    when: str
    status: str
    test_note: str  # "" for a page; says which kind of test otherwise
    answer: list[str]


@dataclass(frozen=True)
class HealthRow:
    """One destination's row, formatted for the template."""

    health: DestinationHealth
    change_url: str | None
    chart: SafeString | None
    success_rate: str
    success_class: str
    latency: str
    pending: PendingCell | None
    failure: FailureCell | None


def health_view(request: HttpRequest) -> TemplateResponse:
    """Render the delivery health page for staff who may view the delivery log."""
    # The page summarises the delivery log (PagerDuty's answers included), so it asks for the
    # log's own permission; admin_view (in destinations/apps.py) has already let only staff in.
    if not may_view_deliveries(request):
        raise PermissionDenied
    report = delivery_health(page=request.GET.get("page"))
    link_destinations = request.user.has_perm("destinations.view_destination")
    labels = [day_label(day) for day in report.days]
    context = {
        **admin.site.each_context(request),
        "title": "Delivery health",
        "app_name": apps.get_app_config("destinations").verbose_name,
        "report": report,
        "since": format_moment(report.since),
        "window_days": len(report.days),
        # For the destinations on this page, which on most installations is all of them.
        "any_deliveries": any(health.total for health in report.destinations),
        "rows": [
            health_row(health, now=report.now, labels=labels, link_destination=link_destinations)
            for health in report.destinations
        ],
    }
    return TemplateResponse(request, "admin/destinations/health.html", context)


def health_row(
    health: DestinationHealth, *, now: datetime, labels: list[str], link_destination: bool
) -> HealthRow:
    """Format one destination's figures for the page."""
    rate = health.success_rate
    pending = health.oldest_pending
    failure = health.last_failure
    return HealthRow(
        health=health,
        change_url=_change_url("destination", health.id) if link_destination else None,
        chart=daily_chart(health.days, labels=labels, name=health.name) if health.total else None,
        success_rate=format_rate(rate),
        success_class=rate_class(rate),
        latency=f"{human_duration_ms(health.p50_ms)} / {human_duration_ms(health.p95_ms)}",
        pending=PendingCell(
            url=_change_url("delivery", pending.id),
            age=human_age(pending.age),
            queued=format_moment(pending.queued_at),
            note=f"#{pending.id} {pending.status}"
            + (f" ({test_label(pending.kind)})" if pending.is_test else "")
            + (f", {pending.unfinished} unfinished" if pending.unfinished > 1 else ""),
        )
        if pending
        else None,
        failure=FailureCell(
            url=_change_url("delivery", failure.id),
            ago=human_age(now - failure.finished_at),
            when=format_moment(failure.finished_at),
            status=f"HTTP {failure.status_code}" if failure.status_code else "no answer",
            test_note=test_label(failure.kind) if failure.is_test else "",
            answer=answer_lines(failure),
        )
        if failure
        else None,
    )


def test_label(kind: str) -> str:
    """Name a test delivery: the test alert itself, or the resolve sent after it."""
    return "test alert" if kind == DeliveryKind.TEST else "resolve of a test alert"


def _change_url(model: str, pk: int) -> str:
    return reverse(f"admin:destinations_{model}_change", args=[pk])


def rate_class(rate: float | None) -> str:
    if rate is None:
        return ""
    if rate >= SUCCESS_RATE_GOOD:
        return "health-good"
    return "health-warn" if rate >= SUCCESS_RATE_POOR else "health-bad"


def format_rate(rate: float | None) -> str:
    """A success rate to one decimal, rounded down so that 99.96% never reads as 100.0%."""
    return "—" if rate is None else f"{math.floor(rate * 10) / 10:.1f}%"


def answer_lines(failure: Failure) -> list[str]:
    """PagerDuty's answer once: our error text when it holds the message and errors, else all."""
    lines = [failure.message] if failure.message else []
    errors = failure.errors if isinstance(failure.errors, list) else [failure.errors]
    lines += [str(error) for error in errors if error]
    # The worker's error text is built from PagerDuty's message and errors (and says why it gave
    # up), so it alone tells the whole answer without repeating it line by line.
    if failure.error and all(line in failure.error for line in lines):
        return [_shorten(failure.error)]
    if failure.error and failure.error not in lines:
        lines.append(failure.error)
    return [_shorten(line) for line in lines]


def _shorten(text: str) -> str:
    return text if len(text) <= ANSWER_MAX_CHARS else text[: ANSWER_MAX_CHARS - 1] + "…"


def format_moment(moment: datetime) -> str:
    return f"{timezone.localtime(moment):%Y-%m-%d %H:%M:%S %Z}"


def human_duration_ms(milliseconds: float | None) -> str:
    """A duration as a person reads it: 850 ms, 4.2 s, 12 min, 3.5 h, 2.1 d."""
    if milliseconds is None:
        return "—"
    if round(milliseconds) < 1000:
        return f"{round(milliseconds)} ms"
    seconds = milliseconds / 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{_number(seconds / size)} {unit}"
    return f"{_number(seconds)} s"


def human_age(age: timedelta) -> str:
    return human_duration_ms(max(age.total_seconds(), 0.0) * 1000)


def _number(value: float) -> str:
    """One decimal under 10, whole numbers from there: 4.2, 12."""
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def day_label(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b}"
