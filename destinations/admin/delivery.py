"""The delivery log in the admin: read-only rows with their attempts, and "Retry now"."""

import json

from django.contrib import admin
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timeuntil

from ..models import UNFINISHED, Delivery, DeliveryAttempt, DeliveryKind, DeliveryStatus
from ..pagerduty.events import EVENT_MAX_BYTES, event_size
from .actions import retry_now_action
from .list_size import LongListAdmin

# The badge's colours, one a status: classes, since the Content-Security-Policy refuses style
# attributes. Each page showing badges loads it (its admin's Media).
STATUS_STYLESHEET = "destinations/delivery_status.css"
# Characters of PagerDuty's answer in a list row; the delivery's page shows all of it.
LIST_ANSWER_MAX = 140
# Why a delivery has no detection run.
NO_RUN = {
    DeliveryKind.TEST: "none: a test alert from the admin",
    DeliveryKind.RESOLVE: "none: it resolves a test alert",
}
# What an attempt's answer column says when it repeats the delivery's answer at the top.
AS_ABOVE = "as above"


def may_view_deliveries(request) -> bool:
    """Whether the user may see delivery outcomes: the delivery log's own view permission.

    A page about something else (a destination, a detection run) shows its deliveries' outcomes,
    PagerDuty's answers among them, only to whoever may read the log itself.
    """
    return request.user.has_perm("destinations.view_delivery")


def status_badge(status: str | None) -> str:
    if not status:
        return "—"
    return format_html('<strong class="delivery-status delivery-{}">{}</strong>', status, status)


def delivery_answer(delivery: Delivery) -> str:
    """PagerDuty's answer: the failure with its errors and why it gave up, or its message."""
    # last_error is built from PagerDuty's message and errors, so it is shown instead of them.
    return delivery.last_error or delivery.pagerduty_message


def next_attempt(delivery: Delivery, now=None) -> str:
    """When the worker tries an unfinished delivery next, in words; blank once it is finished."""
    if delivery.status not in UNFINISHED:
        return ""
    if delivery.status == DeliveryStatus.SENDING:
        return "being sent now"
    now = now or timezone.now()
    if delivery.next_attempt_at <= now:
        return "next attempt due now"
    return f"next attempt in {timeuntil(delivery.next_attempt_at, now)}"


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    empty_value_display = "—"
    can_delete = False
    fields = ["number", "started_at", "took", "status_code", "result", "answer", "raw_answer"]
    readonly_fields = fields
    ordering = ["started_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="took")
    def took(self, obj: DeliveryAttempt) -> str:
        return f"{obj.duration_ms:,} ms"

    @admin.display(description="answer")
    def answer(self, obj: DeliveryAttempt) -> str:
        # The delivery's answer leads the page; an attempt that said the same is not repeated.
        shown = delivery_answer(obj.delivery)
        if not obj.error or shown.startswith(obj.error):
            return AS_ABOVE if shown else "—"
        return obj.error

    @admin.display(description="raw answer")
    def raw_answer(self, obj: DeliveryAttempt):
        if not obj.response_excerpt:
            return "—"
        return format_html(
            '<details class="raw-answer"><summary>show</summary><pre>{}</pre></details>',
            obj.response_excerpt,
        )


@admin.register(Delivery)
class DeliveryAdmin(LongListAdmin, admin.ModelAdmin):
    # Seven columns fit beside the navigation and the filters at 1366 px: the id is in the page's
    # title, the HTTP status in the answer, and the next attempt under the status.
    list_display = [
        "created_at",
        "kind",
        "destination",
        "detection",
        "status_display",
        "total_attempts",
        "answer",
    ]
    list_display_links = ["created_at"]
    list_filter = ["status", "kind", "destination"]
    list_select_related = ["destination", "run__detection"]
    search_fields = ["dedup_key", "run__run_id", "run__detection__name", "destination__name"]
    date_hierarchy = "created_at"
    # Sorted by time only, which an index serves with or without a filter: sorting millions of
    # rows by status or by name would read them all for one page (see LongListAdmin).
    sortable_by = ["created_at"]
    actions = [retry_now_action]
    inlines = [DeliveryAttemptInline]

    class Media:
        css = {"all": [STATUS_STYLESHEET]}

    # What it was, where it went and what came of it lead; the attempts follow (the template puts
    # them before the folded fieldset), then the stored fields for whoever needs them.
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "destination_link",
                    "run_link",
                    "kind",
                    "status_display",
                    "full_answer",
                    "fallback_link",
                    "created_at",
                    "finished_at",
                ]
            },
        ),
        (
            "Stored fields",
            {
                "classes": ["collapse"],
                "fields": [
                    "dedup_key",
                    "returned_dedup_key",
                    "attempts",
                    "total_attempts",
                    "queued_at",
                    "next_attempt_at",
                    "lease_expires_at",
                    "delivered_at",
                    "event_display",
                ],
            },
        ),
    ]
    readonly_fields = [field for _, options in fieldsets for field in options["fields"]]
    # A finished delivery has no next attempt or lease; an unfinished one has not finished yet
    # (Retry now keeps the old failure's finished_at, which would read as a finish).
    unfinished_only = {"next_attempt_at", "lease_expires_at"}
    finished_only = {"finished_at"}
    empty_value_display = "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # The log is read-only; the changelist may still run "Retry now" (change permission).
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        # The log is kept whole; pruning old rows is a job for a command, not a click.
        return False

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        hidden = self.finished_only if obj.status in UNFINISHED else self.unfinished_only
        if obj.fallback_of_id is None and not obj.fallbacks.exists():
            hidden = (*hidden, "fallback_link")  # only a delivery that fell back, or a fallback
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in hidden]})
            for name, options in fieldsets
        ]

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Delivery):
        words = next_attempt(obj)
        if not words:
            return status_badge(obj.status)
        # The exact time on hover: the words are what a reader of the list needs.
        when = obj.lease_expires_at if obj.status == DeliveryStatus.SENDING else obj.next_attempt_at
        return format_html(
            '{} <span class="next-attempt quiet" title="{}">{}</span>',
            status_badge(obj.status),
            localize(timezone.localtime(when)) if when else "",
            words,
        )

    @admin.display(description="detection", ordering="run__detection__name")
    def detection(self, obj: Delivery):
        return obj.run.detection.name if obj.run_id else "—"

    @admin.display(description="PagerDuty's answer")
    def answer(self, obj: Delivery):
        text = delivery_answer(obj)
        if not text:
            return "—"
        short = Truncator(text).chars(LIST_ANSWER_MAX)
        return format_html('<span title="{}">{}</span>', text, short) if short != text else text

    @admin.display(description="destination")
    def destination_link(self, obj: Delivery):
        url = reverse("admin:destinations_destination_change", args=[obj.destination_id])
        return format_html(
            '<a href="{}">{}</a>, PagerDuty {}',
            url,
            obj.destination,
            obj.destination.get_region_display(),
        )

    @admin.display(description="detection run")
    def run_link(self, obj: Delivery):
        if obj.run_id is None:
            return NO_RUN.get(obj.kind, "—")
        url = reverse("admin:detections_detectionrun_change", args=[obj.run_id])
        return format_html(
            '{}, <a href="{}">run {}</a> ({})',
            obj.run.detection.name,
            url,
            obj.run.run_id,
            obj.run.get_outcome_display(),
        )

    @admin.display(description="PagerDuty's answer")
    def full_answer(self, obj: Delivery) -> str:
        text = delivery_answer(obj)
        if obj.status == DeliveryStatus.DELIVERED:
            return f"{obj.last_status_code}: {text}" if obj.last_status_code else text
        if text:
            return text
        if obj.total_attempts:
            return "—"
        if obj.status == DeliveryStatus.SENDING:
            return "none yet: the first attempt is under way"
        return "none yet: not sent"

    @admin.display(description="dedup key PagerDuty returned")
    def returned_dedup_key(self, obj: Delivery) -> str:
        return obj.pagerduty_dedup_key or "—"

    @admin.display(description="fallback")
    def fallback_link(self, obj: Delivery):
        """Link a failed page and the delivery that took its event to the fallback (§10)."""
        # Names and statuses only: a destination's key is never read for the log.
        columns = ("pk", "destination__name", "status")
        links = []
        if obj.fallback_of_id:
            origin = Delivery.objects.filter(pk=obj.fallback_of_id).values_list(*columns)
            links += [("fallback of", *row) for row in origin]
        links += [("fell back to", *row) for row in obj.fallbacks.values_list(*columns)]
        if not links:
            return "—"
        return format_html_join(
            "<br>",
            '{} <a href="{}">#{}</a> ({}, {})',
            (
                (
                    words,
                    reverse("admin:destinations_delivery_change", args=[pk]),
                    pk,
                    name,
                    status_badge(status),
                )
                for words, pk, name, status in links
            ),
        )

    @admin.display(description="event")
    def event_display(self, obj: Delivery):
        return render_to_string(
            "admin/destinations/delivery/event.html",
            {
                "event_json": json.dumps(obj.event, indent=2, ensure_ascii=False),
                "size": event_size(obj.event),
                "limit": EVENT_MAX_BYTES,
            },
        )
