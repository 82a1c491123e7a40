from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery
from django.template.loader import render_to_string

from destinations.configuration import managed_notice

from .forms import DetectionForm
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
    readonly_fields = ["id", "recent_runs", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "id", "description", "severity", "enabled"]}),
        ("Match", {"fields": ["match_operator", "match_threshold", "match_eagerness"]}),
        ("Destinations", {"fields": ["destinations"]}),
        ("Recent runs", {"fields": ["recent_runs", "created_at", "updated_at"]}),
    ]

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None:
            return fieldsets
        # Before the first save there is no id (a new one is drawn on saving) and no run.
        return [
            (name, {**options, "fields": [f for f in options["fields"] if f != "id"]})
            for name, options in fieldsets
            if name != "Recent runs"
        ]

    def has_change_permission(self, request, obj=None):
        # A record that a configuration file manages is changed there (and applied), not here.
        if obj is not None and obj.managed_by:
            return False
        return super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        if obj is not None and obj.managed_by:
            return False
        return super().has_delete_permission(request, obj)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        detection = self.get_object(request, object_id)
        notice = managed_notice(detection.managed_by) if detection and detection.managed_by else ""
        extra_context = {**(extra_context or {}), "managed_notice": notice}
        return super().change_view(request, object_id, form_url, extra_context)

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

    list_display = ["name", "scope", "prefix", "created_at", "last_used_at"]
    list_filter = ["scope"]
    empty_value_display = "never"  # only last_used_at can be empty
    readonly_fields = ["name", "scope", "prefix", "created_at", "last_used_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
