"""The delivery log in the admin: read-only rows with their attempts, and "Retry now"."""

import json

from django.contrib import admin
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ..models import Delivery, DeliveryAttempt, DeliveryStatus
from ..pagerduty.events import EVENT_MAX_BYTES, event_size
from .actions import retry_now_action

STATUS_COLOURS = {
    DeliveryStatus.PENDING: "#8a6d00",
    DeliveryStatus.SENDING: "#1f5fa8",
    DeliveryStatus.DELIVERED: "#1e7b34",
    DeliveryStatus.FAILED: "#b42318",
}


def status_badge(status: str | None) -> str:
    if not status:
        return "—"
    return format_html(
        '<strong class="delivery-status delivery-{}" style="color: {}">{}</strong>',
        status,
        STATUS_COLOURS.get(status, "inherit"),
        status,
    )


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    empty_value_display = "—"
    can_delete = False
    fields = [
        "number",
        "started_at",
        "duration_ms",
        "status_code",
        "result",
        "error",
        "response_excerpt",
    ]
    readonly_fields = fields
    ordering = ["started_at", "id"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "kind",
        "destination",
        "detection",
        "status_display",
        "total_attempts",
        "last_status_code",
        "answer",
        "next_attempt_at",
    ]
    list_filter = ["status", "kind", "destination"]
    list_select_related = ["destination", "run__detection"]
    search_fields = ["dedup_key", "run__run_id", "run__detection__name", "destination__name"]
    date_hierarchy = "created_at"
    actions = [retry_now_action]
    inlines = [DeliveryAttemptInline]
    fields = [
        "destination",
        "run",
        "kind",
        "status_display",
        "dedup_key",
        "attempts",
        "total_attempts",
        "queued_at",
        "next_attempt_at",
        "lease_expires_at",
        "last_status_code",
        "pagerduty_message",
        "pagerduty_errors",
        "pagerduty_dedup_key",
        "last_error",
        "fallback_link",
        "created_at",
        "delivered_at",
        "finished_at",
        "event_display",
    ]
    readonly_fields = fields
    show_full_result_count = False  # counting 100,000s of rows on every page is wasted work
    empty_value_display = "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        # The log is read-only; the changelist may still run "Retry now" (change permission).
        return obj is None and super().has_change_permission(request)

    @admin.display(description="status", ordering="status")
    def status_display(self, obj: Delivery):
        return status_badge(obj.status)

    @admin.display(description="detection", ordering="run__detection__name")
    def detection(self, obj: Delivery):
        return obj.run.detection.name if obj.run_id else "—"

    @admin.display(description="PagerDuty's answer")
    def answer(self, obj: Delivery) -> str:
        # last_error already carries PagerDuty's message and errors, and why it gave up.
        text = obj.last_error or obj.pagerduty_message
        return text[:200] or "—"

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
