from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import F, OuterRef, Subquery, TextField
from django.db.models.functions import Cast
from django.http import Http404, JsonResponse
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
from ..services import SAMPLE_RUN_DESCRIPTION, preview_event, send_test_alert
from .actions import (
    RESOLVE_CHECKBOX,
    disable_selected,
    enable_selected,
    report_test_alert,
    send_test_alert_and_resolve,
    test_alert_level,
)
from .actions import send_test_alert as send_test_alert_action
from .delivery import STATUS_STYLESHEET, may_view_deliveries, status_badge
from .history import AuditTrailAdmin, ChangeListAdmin
from .managed import ManagedRecordAdmin

admin.site.register(Destination.history.model, ChangeListAdmin)


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
class DestinationAdmin(AuditTrailAdmin, ManagedRecordAdmin, admin.ModelAdmin):
    form = DestinationForm
    list_display = [
        "name",
        "enabled",
        "region_display",
        "masked_key",
        "severity_display",
        "routing",
        "last_delivery",
        "key_age",
        "fallback_display",
    ]
    list_filter = [
        "enabled",
        "region",
        "severity_override",
        "minimum_severity",
        "all_detections",
        "auto_resolve",
        KeyAgeFilter,
    ]
    search_fields = ["name", "component", "group", "event_class"]
    actions = [
        send_test_alert_action,
        send_test_alert_and_resolve,
        enable_selected,
        disable_selected,
    ]
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
            "Routing and resolving",
            {"fields": ["minimum_severity", "all_detections", "auto_resolve"]},
        ),
        (
            "Event",
            {
                "fields": [
                    "summary_template",
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
        ("Delivery", {"fields": ["timeout_seconds", "fallback"]}),
        ("Key", {"fields": ["masked_key", "routing_key_rotated_at", "created_at", "updated_at"]}),
    ]
    # Shown only once the destination is saved: they describe the stored key and settings.
    saved_only_fieldsets = ("Event preview", "Key")

    def get_queryset(self, request):
        queryset = (
            super()
            .get_queryset(request)
            # The key is read through its raw token so one undecryptable key shows as such
            # instead of breaking the whole page.
            .defer("routing_key")
            .annotate(
                routing_key_token=Cast("routing_key", TextField()),
                # The fallback's name only: its key is not read for the list.
                fallback_name=F("fallback__name"),
            )
        )
        if not may_view_deliveries(request):
            return queryset
        # One subquery (served by the delivery_recent index) instead of a query per row.
        latest = Delivery.objects.filter(destination=OuterRef("pk")).order_by("-created_at", "-id")
        return queryset.annotate(
            last_delivery_status=Subquery(latest.values("status")[:1]),
            last_delivery_at=Subquery(latest.values("created_at")[:1]),
        )

    def get_list_display(self, request):
        # The last delivery's outcome is the delivery log's to show (see may_view_deliveries).
        columns = super().get_list_display(request)
        if may_view_deliveries(request):
            return columns
        return [column for column in columns if column != "last_delivery"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return [
                (name, options)
                for name, options in fieldsets
                if name not in self.saved_only_fieldsets
            ]
        if not self.has_change_permission(request, obj):
            # A read-only page would show the key field's value, which is the key itself; the
            # Key section shows it masked.
            return [
                (name, {**options, "fields": [f for f in options["fields"] if f != "routing_key"]})
                for name, options in fieldsets
            ]
        return fieldsets

    def has_test_alert_permission(self, request) -> bool:
        """Test alerts need the change permission, and work on managed records too."""
        return super().has_change_permission(request)

    @admin.display(description="sample event")
    def event_preview(self, obj: Destination):
        if obj is None or obj.pk is None:
            return "Shown once the destination is saved."
        return render_to_string(
            "admin/destinations/destination/event_preview.html", {"preview": preview_event(obj)}
        )

    @admin.display(description="routing", ordering="minimum_severity")
    def routing(self, obj: Destination) -> str:
        # One column for the three settings, so the list stays one line a destination.
        parts = [obj.get_minimum_severity_display()]
        if obj.all_detections:
            parts.append("all detections")
        if obj.auto_resolve:
            parts.append("auto-resolve")
        return " · ".join(parts)

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

    @admin.display(description="falls back to", ordering="fallback__name")
    def fallback_display(self, obj: Destination) -> str:
        return getattr(obj, "fallback_name", None) or "—"

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

    class Media:
        # Sends the form's values to the test endpoint without leaving the page (see the file).
        js = ["destinations/test_alert.js"]
        css = {"all": [STATUS_STYLESHEET]}  # the list's last delivery

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # Where "Send test alert" posts the form, for whoever may use it on this page.
        if add and self.has_add_permission(request):
            context["test_alert_url"] = reverse("admin:destinations_destination_add_test_alert")
        elif obj is not None and self.has_test_alert_permission(request):
            # A managed record is read-only here, yet its test alerts still work (they save
            # nothing): its form then posts no fields, and the saved destination is tested.
            context["test_alert_url"] = reverse(
                "admin:destinations_destination_test_alert", args=[obj.pk]
            )
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_urls(self):
        return [
            path(
                "test-alert/",
                self.admin_site.admin_view(self.add_test_alert_view),
                name="destinations_destination_add_test_alert",
            ),
            path(
                "<path:object_id>/send-test-alert/",
                self.admin_site.admin_view(self.test_alert_view),
                name="destinations_destination_test_alert",
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def add_test_alert_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        return self._test_form_values(request, None)

    @method_decorator(require_POST)
    def test_alert_view(self, request, object_id):
        destination = self.get_object(request, object_id)
        if destination is None:
            raise Http404("No such destination.")
        if not self.has_test_alert_permission(request):
            raise PermissionDenied
        return self._test_form_values(request, destination)

    def _test_form_values(self, request, destination: Destination | None):
        """Send a test alert built from the posted form, validated as Save would; save nothing.

        The page's script asks for JSON and shows the answer in place, keeping what was typed
        (the key input is write-only, so a reload would lose it). Without the script the form
        is posted here and the answer is a message on the page it came from.
        """
        form_class = self.get_form(request, destination, change=destination is not None)
        wants_json = "application/json" in request.headers.get("Accept", "")
        if destination is None:
            back = reverse("admin:destinations_destination_add")
        else:
            back = reverse("admin:destinations_destination_change", args=[destination.pk])
        if destination is not None and not request.POST.keys() & form_class.base_fields.keys():
            # A post without the form's fields (a script, a page from before the form was sent
            # along) tests the destination as saved, as the list's action does.
            report_test_alert(
                self,
                request,
                destination,
                resolve=bool(request.POST.get("resolve")),
                resolve_option=RESOLVE_CHECKBOX,
            )
            return redirect(back)
        # The form sets the typed values on this in-memory copy only; it is never saved here.
        form = form_class(request.POST, request.FILES, instance=destination)
        if not form.is_valid():
            message = "Test alert not sent: " + _form_errors_sentence(form) + " Nothing was saved."
            if wants_json:
                errors = {field: list(errors) for field, errors in form.errors.items()}
                return JsonResponse(
                    {"level": "error", "message": message, "errors": errors}, status=400
                )
            self.message_user(request, message, level=messages.ERROR)
            return redirect(back)
        outcome = send_test_alert(
            destination=form.instance,
            sent_by=request.user.get_username(),
            resolve=bool(request.POST.get("resolve")),
            # A typed key is tested as typed; a blank one (change page only) means the stored key.
            routing_key=form.cleaned_data.get("routing_key"),
        )
        message = outcome.summary(resolve_option=RESOLVE_CHECKBOX)
        if outcome.logged:
            message += " Sent with the values on this form as they are; nothing was saved."
        level = test_alert_level(outcome)
        if wants_json:
            return JsonResponse(
                {"level": messages.DEFAULT_TAGS[level], "message": message, "errors": {}}
            )
        self.message_user(request, message, level=level)
        return redirect(back)


def _form_errors_sentence(form) -> str:
    """The form's errors, each after its field's label, for the message above the button."""
    parts = [
        f"{form[field].label}: {' '.join(errors)}" if field in form.fields else " ".join(errors)
        for field, errors in form.errors.items()
    ]
    return "correct the form first. " + " ".join(parts)
