from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_http_methods

from destinations.admin.actions import disable_selected, enable_selected
from destinations.admin.delivery import STATUS_STYLESHEET, may_view_deliveries, status_badge
from destinations.admin.history import AuditTrailAdmin, ChangeListAdmin
from destinations.admin.list_size import LongListAdmin
from destinations.admin.managed import ManagedRecordAdmin
from destinations.delivery.routing import routes
from destinations.models import Delivery

from .forms import DetectionForm
from .models import ApiToken, Detection, DetectionRun
from .services import DetectionCannotMatch, record_test_run, run_deliveries, run_now_plan

RECENT_RUNS = 10
# The confirmation page's submit button: only a POST carrying it records a run.
CONFIRM = "confirm"


def _plans(modeladmin, request, detections):
    """Each detection's plan; a detection that cannot match gets its message instead."""
    plans = []
    for detection in detections:
        try:
            plans.append(run_now_plan(detection))
        except DetectionCannotMatch as error:
            modeladmin.message_user(request, str(error), level=messages.ERROR)
    return plans


def _confirmation(modeladmin, request, plans, *, hidden, cancel_url, detection=None):
    """The page that says whom Run now would page, and asks before it does."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Run now (test run)?",
        "subtitle": detection.name if detection else None,
        "opts": modeladmin.opts,
        "original": detection,
        "plans": plans,
        "anyone_paged": any(plan.paged for plan in plans),
        "hidden": hidden,
        "confirm_name": CONFIRM,
        "cancel_url": cancel_url,
    }
    return TemplateResponse(
        request, "admin/detections/detection/run_now_confirmation.html", context
    )


def report_test_run(modeladmin, request, detection: Detection) -> None:
    """Record a MANUAL run that matches, queue its pages, and tell the admin what was queued."""
    try:
        recorded = record_test_run(detection=detection)
    except DetectionCannotMatch as error:
        modeladmin.message_user(request, str(error), level=messages.ERROR)
        return
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
            else "none of its destinations takes it (see “Pages” on the detection)."
        )
        level = messages.WARNING
    modeladmin.message_user(request, text, level=level)


@admin.action(permissions=["change"], description="Run now (test run)")
def run_now(modeladmin, request, queryset):
    """Say whom a test run would page; once confirmed, record a MANUAL run that matches."""
    detections = list(queryset.order_by("name"))
    if request.POST.get(CONFIRM):
        for detection in detections:
            report_test_run(modeladmin, request, detection)
        return None
    plans = _plans(modeladmin, request, detections)
    if not plans:
        return None
    hidden = [("action", "run_now")] + [
        (ACTION_CHECKBOX_NAME, str(plan.detection.pk)) for plan in plans
    ]
    return _confirmation(
        modeladmin, request, plans, hidden=hidden, cancel_url=request.get_full_path()
    )


admin.site.register(Detection.history.model, ChangeListAdmin)


@admin.register(Detection)
class DetectionAdmin(AuditTrailAdmin, ManagedRecordAdmin, admin.ModelAdmin):
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
    actions = [run_now, enable_selected, disable_selected]
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

    def get_urls(self):
        return [
            path(
                "<path:object_id>/run-now/",
                self.admin_site.admin_view(self.run_now_view),
                name="detections_detection_run_now",
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_http_methods(["GET", "HEAD", "POST"]))
    def run_now_view(self, request, object_id):
        """The page's "Run now": the confirmation on GET, the test run on a confirmed POST."""
        detection = self.get_object(request, unquote(object_id))
        if detection is None:
            raise Http404("No such detection.")
        if not self.has_change_permission(request, detection):
            raise PermissionDenied
        change_url = reverse("admin:detections_detection_change", args=[detection.pk])
        if request.method == "POST" and request.POST.get(CONFIRM):
            report_test_run(self, request, detection)
            return redirect(change_url)
        plans = _plans(self, request, [detection])
        if not plans:
            return redirect(change_url)
        return _confirmation(
            self, request, plans, hidden=[], cancel_url=change_url, detection=detection
        )

    def get_deleted_objects(self, objs, request):
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        # The run log offers no Delete of its own, but a detection's runs go with it, as
        # before, for whoever may delete runs.
        if request.user.has_perm("detections.delete_detectionrun"):
            perms_needed.discard(DetectionRun._meta.verbose_name)
        return deleted, counts, perms_needed, protected

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
        # The newest runs first, then each one's deliveries counted: grouping every run of the
        # detection by its deliveries before taking ten read them all (one per minute for a year
        # is half a million).
        deliveries = (
            Delivery.objects.filter(run=OuterRef("pk"))
            .order_by()
            .values("run")
            .annotate(count=Count("pk"))
            .values("count")
        )
        runs = obj.runs.annotate(delivery_count=Coalesce(Subquery(deliveries), 0))[:RECENT_RUNS]
        return render_to_string("admin/detections/recent_runs.html", {"runs": runs})


@admin.register(DetectionRun)
class DetectionRunAdmin(LongListAdmin, admin.ModelAdmin):
    list_display = ["run_id", "detection", "outcome", "match_count", "run_type", "ran_at"]
    list_filter = ["outcome", "run_type", "detection"]
    list_select_related = ["detection"]
    search_fields = ["run_id", "search_id", "trace_id", "detection__name"]
    date_hierarchy = "ran_at"
    # As the delivery log: sorted by time only, which an index serves under every filter.
    sortable_by = ["ran_at"]
    empty_value_display = "—"
    readonly_fields = ["deliveries_table", "recorded_at"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "detection",
                    "run_id",
                    "run_type",
                    "outcome",
                    "match_count",
                    "ran_at",
                    "range_start",
                    "range_end",
                ]
            },
        ),
        ("Deliveries", {"fields": ["deliveries_table"]}),
        (
            "From the detection engine",
            {
                "fields": [
                    "match_exhaustiveness",
                    "search_id",
                    "trace_id",
                    "errors",
                    "errors_total",
                    "replay_link",
                    "recorded_at",
                ]
            },
        ),
    ]

    class Media:
        css = {"all": [STATUS_STYLESHEET]}  # the deliveries' statuses

    def get_fieldsets(self, request, obj=None):
        # Its deliveries' outcomes are the delivery log's to show (see may_view_deliveries).
        fieldsets = super().get_fieldsets(request, obj)
        if may_view_deliveries(request):
            return fieldsets
        return [(name, options) for name, options in fieldsets if name != "Deliveries"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # The run log is a record: no Delete on a run's page nor in the list's actions.
        return False

    @admin.display(description="deliveries")
    def deliveries_table(self, obj: DetectionRun):
        deliveries = run_deliveries(obj)
        return render_to_string(
            "admin/detections/detectionrun/deliveries.html",
            {
                "run": obj,
                "rows": [(delivery, status_badge(delivery.status)) for delivery in deliveries],
            },
        )


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
