from datetime import timedelta

from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, Subquery, TextField
from django.db.models.functions import Cast
from django.http import Http404
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from ..forms import DestinationForm
from ..keys.routing import UNREADABLE_KEY, mask_routing_key, readable_key
from ..models import Delivery, Destination
from ..services import SAMPLE_RUN_DESCRIPTION, preview_event
from .actions import report_test_alert, send_test_alert, send_test_alert_and_resolve
from .delivery import status_badge


class KeyAgeFilter(admin.SimpleListFilter):
    title = "key age"
    parameter_name = "key_age"

    def lookups(self, request, model_admin):
        days = settings.ROUTING_KEY_MAX_AGE_DAYS
        return [("stale", f"Older than {days} days"), ("fresh", f"Within {days} days")]

    def queryset(self, request, queryset):
        cutoff = timezone.now() - timedelta(days=settings.ROUTING_KEY_MAX_AGE_DAYS)
        if self.value() == "stale":
            return queryset.filter(routing_key_rotated_at__lt=cutoff)
        if self.value() == "fresh":
            return queryset.filter(routing_key_rotated_at__gte=cutoff)
        return queryset


@admin.register(Destination)
class DestinationAdmin(admin.ModelAdmin):
    form = DestinationForm
    list_display = [
        "name",
        "enabled",
        "region_display",
        "masked_key",
        "severity_display",
        "last_delivery",
        "key_age",
    ]
    list_filter = ["enabled", "region", "severity_override", KeyAgeFilter]
    search_fields = ["name", "component", "group", "event_class"]
    actions = [send_test_alert, send_test_alert_and_resolve]
    readonly_fields = [
        "masked_key",
        "routing_key_rotated_at",
        "created_at",
        "updated_at",
        "event_preview",
    ]
    empty_value_display = "—"
    fieldsets = [
        (None, {"fields": ["name", "enabled", "region", "routing_key"]}),
        (
            "Event",
            {
                "fields": [
                    "severity_override",
                    "component",
                    "group",
                    "event_class",
                    "custom_details",
                ]
            },
        ),
        (
            "Event preview",
            {
                "fields": ["event_preview"],
                "description": "What PagerDuty would receive from this destination, as saved, "
                f"when a detection run matches: here {SAMPLE_RUN_DESCRIPTION}. "
                "Save to see your changes in it.",
            },
        ),
        ("Delivery", {"fields": ["timeout_seconds"]}),
        ("Key", {"fields": ["masked_key", "routing_key_rotated_at", "created_at", "updated_at"]}),
    ]
    # Shown only once the destination is saved: they describe the stored key and settings.
    saved_only_fieldsets = ("Event preview", "Key")

    def get_queryset(self, request):
        # One subquery (served by the delivery_recent index) instead of a query per row.
        latest = Delivery.objects.filter(destination=OuterRef("pk")).order_by("-created_at", "-id")
        return (
            super()
            .get_queryset(request)
            # The key is read through its raw token so one undecryptable key shows as such
            # instead of breaking the whole page.
            .defer("routing_key")
            .annotate(
                routing_key_token=Cast("routing_key", TextField()),
                last_delivery_status=Subquery(latest.values("status")[:1]),
                last_delivery_at=Subquery(latest.values("created_at")[:1]),
            )
        )

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return [
                (name, options)
                for name, options in fieldsets
                if name not in self.saved_only_fieldsets
            ]
        return fieldsets

    @admin.display(description="sample event")
    def event_preview(self, obj: Destination):
        if obj is None or obj.pk is None:
            return "Shown once the destination is saved."
        return render_to_string(
            "admin/destinations/destination/event_preview.html", {"preview": preview_event(obj)}
        )

    @admin.display(description="last delivery", ordering="last_delivery_at")
    def last_delivery(self, obj: Destination):
        status = getattr(obj, "last_delivery_status", None)
        if not status:
            return "—"
        return format_html(
            '{} <span class="quiet">{}</span>',
            status_badge(status),
            timesince(obj.last_delivery_at) + " ago",
        )

    @admin.display(description="integration key")
    def masked_key(self, obj: Destination) -> str:
        token = getattr(obj, "routing_key_token", None)
        if token is None:
            return obj.masked_routing_key
        readable = readable_key(token)
        return UNREADABLE_KEY if readable is None else mask_routing_key(readable)

    @admin.display(description="region", ordering="region")
    def region_display(self, obj: Destination):
        # "US" or "EU" in the list; the host it stands for is in the title and the filter.
        return format_html(
            '<span title="{}">{}</span>', obj.get_region_display(), obj.region.upper()
        )

    @admin.display(description="severity", ordering="severity_override")
    def severity_display(self, obj: Destination) -> str:
        # "Automatic" alone: the list has no room for "(from detection severity)".
        if not obj.severity_override:
            return "Automatic"
        return obj.get_severity_override_display()

    @admin.display(description="key age", ordering="routing_key_rotated_at")
    def key_age(self, obj: Destination):
        days = obj.routing_key_age_days()
        if days is None:
            return "—"
        if days > settings.ROUTING_KEY_MAX_AGE_DAYS:
            return format_html(
                '<strong class="key-stale" title="Rotate it: python manage.py '
                'rotate_routing_key">⚠ {} days — rotate</strong>',
                days,
            )
        return f"{days} days"

    def get_urls(self):
        return [
            path(
                "<path:object_id>/send-test-alert/",
                self.admin_site.admin_view(self.test_alert_view),
                name="destinations_destination_test_alert",
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def test_alert_view(self, request, object_id):
        destination = self.get_object(request, object_id)
        if destination is None:
            raise Http404("No such destination.")
        if not self.has_change_permission(request, destination):
            raise PermissionDenied
        report_test_alert(self, request, destination, resolve=bool(request.POST.get("resolve")))
        return redirect(reverse("admin:destinations_destination_change", args=[destination.pk]))
