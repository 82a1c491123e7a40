"""The health page's daily chart: stacked bars of delivered, failed and pending, as inline SVG."""

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from ..health import DayCount

# Chart geometry in SVG user units: one bar per day, the day of the month underneath.
BAR_WIDTH = 12
BAR_GAP = 3
BARS_HEIGHT = 40
LABEL_HEIGHT = 11
DAY_WIDTH = BAR_WIDTH + BAR_GAP
CHART_HEIGHT = BARS_HEIGHT + LABEL_HEIGHT
# Each of the three segments (delivered, failed, pending) is drawn at least this tall, so one
# failure among hundreds still shows.
MIN_SEGMENT = 1
SEGMENTS = 3


def day_title(label: str, day: DayCount) -> str:
    """What a bar says about its day: its <title>, read out by screen readers and on hover."""
    text = f"{label}: {day.delivered} delivered, {day.failed} failed, {day.other} pending"
    if day.tests:
        # Tests: test alerts and the resolves sent after them.
        text += f" (of which {day.tests} test{'' if day.tests == 1 else 's'})"
    return text


def daily_chart(days: list[DayCount], *, labels: list[str], name: str) -> SafeString:
    """Stacked bars of delivered, failed and pending deliveries per day, as inline SVG."""
    # Built as one string rather than with template tags, which would cost a tag per rect.
    # `name` is the only text that comes from a user, and it is escaped; everything else is a
    # number or a label formatted here.
    peak = max(day.total for day in days)
    scale = (BARS_HEIGHT - SEGMENTS * MIN_SEGMENT) / peak
    width = len(days) * DAY_WIDTH - BAR_GAP
    parts = [
        f'<svg class="health-chart" width="{width}" height="{CHART_HEIGHT}" role="group" '
        f'aria-label="Deliveries per day to {escape(name)} over the last {len(days)} days, '
        f'at most {peak} a day">'
    ]
    for index, (label, day) in enumerate(zip(labels, days, strict=True)):
        x = index * DAY_WIDTH
        # Each day is an image named by its <title>, so a screen reader reads the counts out; the
        # transparent full-height rect lets an empty or short day show that title on hover too.
        parts.append(
            f'<g role="img"><title>{day_title(label, day)}</title>'
            f'<rect class="h" x="{x}" width="{BAR_WIDTH}" height="{BARS_HEIGHT}"/>'
        )
        top = BARS_HEIGHT
        for count, css_class in ((day.delivered, "d"), (day.failed, "f"), (day.other, "o")):
            if count:
                bar = max(count * scale, MIN_SEGMENT)
                top -= bar
                parts.append(
                    f'<rect class="{css_class}" x="{x}" y="{top:.1f}" width="{BAR_WIDTH}" '
                    f'height="{bar:.1f}"/>'
                )
        parts.append(
            f'<text x="{x + BAR_WIDTH // 2}" y="{CHART_HEIGHT - 1}">{day.day.day}</text></g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308  numbers, our labels and an escaped name only
