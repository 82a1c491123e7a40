from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.template.loader import render_to_string
from django.utils.html import format_html, format_html_join

from destinations.delivery.routing import routes

from .models import ApiToken, Detection, DetectionRun
from .services import DetectionCannotMatch, record_test_run

RECENT_RUNS = 10


@admin.action(permissions=["change"], description="Run now (test run)")
def run_now(modeladmin, request, queryset):
    """Record a MANUAL run that matches and deliver it through the normal path."""
    for detection in queryset.order_by("name"):
        try:
            recorded = record_test_run(detection=detection)
        except DetectionCannotMatch as error:
            modeladmin.message_user(request, str(error), level=messages.ERROR)
            continue
        deliveries = len(recorded.deliveries)
        if deliveries:
            text = (
                f"Test run of “{detection.name}” recorded ({recorded.run.outcome}, run "
                f"{recorded.run.run_id}); {deliveries} deliver{'y' if deliveries == 1 else 'ies'} "
                f"queued. Follow {'it' if deliveries == 1 else 'them'} under Deliveries."
            )
            level = messages.SUCCESS
        else:
            text = f"Test run of “{detection.name}” recorded, but nothing was queued: " + (
                "the detection is disabled."
                if not detection.enabled
                else "it has no enabled destination."
            )
            level = messages.WARNING
        modeladmin.message_user(request, text, level=level)


class DetectionForm(forms.ModelForm):
    """The detection form, with help that says what each field does to the PagerDuty event."""

    class Meta:
        model = Detection
        fields = [
            "name",
            "description",
            "severity",
            "enabled",
            "match_operator",
            "match_threshold",
            "match_eagerness",
            "destinations",
        ]
        help_texts = {
            "name": "Runs of one detection update one PagerDuty incident; its dedup key comes "
            "from this name, so renaming starts a new incident.",
            "severity": "Becomes the event's PagerDuty severity unless a destination overrides it: "
            "CRITICAL → critical, HIGH → error, MEDIUM → warning, LOW → info.",
            "match_operator": "A run matches when its count compares to the threshold like this, "
            "e.g. greater than 10.",
            "match_threshold": "A whole number, 0 or more.",
            "match_eagerness": "How the detection engine searches; sent in the event's "
            "custom details.",
            "enabled": "Runs of a disabled detection are still recorded, but nobody is paged.",
            "destinations": "Every enabled destination chosen here gets an event when a run "
            "matches or ends in error, unless the detection is below the destination's minimum "
            "severity; destinations that receive all detections get it without being chosen. "
            "“Pages” below shows who, once saved. Destinations are added under PagerDuty "
            "destinations.",
        }


@admin.register(Detection)
class DetectionAdmin(admin.ModelAdmin):
    form = DetectionForm
    empty_value_display = "—"
    list_display = [
        "name",
        "severity",
        "condition",
        "enabled",
        "destination_count",
        "last_outcome",
    ]
    list_filter = ["enabled", "severity", "destinations"]
    search_fields = ["name", "description"]
    filter_horizontal = ["destinations"]
    actions = [run_now]
    readonly_fields = ["id", "pages", "recent_runs", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "id", "description", "severity", "enabled"]}),
        ("Match", {"fields": ["match_operator", "match_threshold", "match_eagerness"]}),
        ("Destinations", {"fields": ["destinations", "pages"]}),
        ("Recent runs", {"fields": ["recent_runs", "created_at", "updated_at"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None:
            return fieldsets
        # Before the first save there is no id (a new one is drawn on saving), no run, and no
        # routing to show.
        unsaved = ("id", "pages")
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f not in unsaved]})
            for name, options in fieldsets
            if name != "Recent runs"
        ]

    def get_queryset(self, request):
        last_run = DetectionRun.objects.filter(detection=OuterRef("pk")).order_by("-ran_at", "-id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                destinations_count=Count("destinations", distinct=True),
                last_run_outcome=Subquery(last_run.values("outcome")[:1]),
            )
        )

    @admin.display(description="condition")
    def condition(self, obj: Detection) -> str:
        return f"count {obj.get_match_operator_display()} {obj.match_threshold}"

    @admin.display(description="destinations", ordering="destinations_count")
    def destination_count(self, obj: Detection) -> int:
        return obj.destinations_count

    @admin.display(description="last outcome", ordering="last_run_outcome")
    def last_outcome(self, obj: Detection) -> str:
        return obj.last_run_outcome or "—"

    @admin.display(description="pages")
    def pages(self, obj: Detection):
        """Who a matching run would page, as saved, and why; the skipped ones with their reason."""
        # Paged first, then skipped, each by name: the reader's question is "who gets it?".
        found = sorted(routes(obj), key=lambda route: (not route.pages, route.destination.name))
        if not found:
            return "Nobody: no destination is attached and none receives all detections."
        return format_html(
            '<ul class="detection-pages">{}</ul>',
            format_html_join(
                "",
                "<li><strong>{}</strong>: {}</li>",
                (
                    (
                        route.destination.name,
                        route.reason if route.pages else f"{route.via}; {route.reason}",
                    )
                    for route in found
                ),
            ),
        )

    @admin.display(description="recent runs")
    def recent_runs(self, obj: Detection):
        if not obj.pk:
            return "—"
        runs = obj.runs.annotate(delivery_count=Count("deliveries"))[:RECENT_RUNS]
        return render_to_string("admin/detections/recent_runs.html", {"runs": runs})


@admin.register(DetectionRun)
class DetectionRunAdmin(admin.ModelAdmin):
    list_display = ["run_id", "detection", "outcome", "match_count", "run_type", "ran_at"]
    list_filter = ["outcome", "run_type", "detection"]
    list_select_related = ["detection"]
    search_fields = ["run_id", "search_id", "trace_id", "detection__name"]
    date_hierarchy = "ran_at"
    show_full_result_count = False
    empty_value_display = "—"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens are made with `manage.py create_api_token` (shown once); here they are revoked."""

    list_display = ["name", "prefix", "created_at", "last_used_at"]
    empty_value_display = "never"  # only last_used_at can be empty
    readonly_fields = ["name", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
