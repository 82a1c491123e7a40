"""The audit trail in the admin: each record's History page, and the list of every change."""

from functools import partial

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from ..audit.records import CHANGED, CREATED, record_change
from ..audit.trail import audit_trail, change_lines, trail_entry

# The History page shows this many changes; the list of changes holds all of them.
TRAIL_SHOWN = 100


class AuditTrailAdmin:
    """A ModelAdmin mixin: the History page lists the audit trail above Django's admin log,
    and each save through the form (many-to-many choices included) is one change in it."""

    object_history_template = "admin/destinations/audit/object_history.html"

    def history_view(self, request, object_id, extra_context=None):
        record = self.get_object(request, unquote(object_id))
        if record is None:  # Django's own view says so
            return super().history_view(request, object_id, extra_context)
        pk = record.pk
        history = self.model.history.model
        context = {
            # Read only when the page is drawn, after Django has checked the permission.
            "audit_trail": partial(audit_trail, self.model, pk, limit=TRAIL_SHOWN),
            "audit_trail_limit": TRAIL_SHOWN,
        }
        if self.model.history.filter(**{self.model._meta.pk.attname: pk}).count() > TRAIL_SHOWN:
            context["audit_trail_url"] = (
                reverse(f"admin:{history._meta.app_label}_{history._meta.model_name}_changelist")
                + f"?{self.model._meta.pk.attname}={pk}"
            )
        return super().history_view(request, object_id, {**context, **(extra_context or {})})

    def save_model(self, request, obj, form, change):
        # Recorded once, in save_related, when the many-to-many choices are set too.
        obj.skip_history_when_saving = True
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        try:
            super().save_related(request, form, formsets, change)
        finally:
            form.instance.__dict__.pop("skip_history_when_saving", None)
        record_change(form.instance, CHANGED if change else CREATED)


class ChangeListAdmin(admin.ModelAdmin):
    """Every kept change of one model, deleted records' included; read-only."""

    list_display = ["when", "record", "action", "who", "via", "changes"]
    list_filter = ["history_type"]
    search_fields = ["name", "history_change_reason", "history_user__username"]
    date_hierarchy = "history_date"
    list_select_related = ["history_user"]

    @admin.display(description="date/time", ordering="history_date")
    def when(self, obj):
        return obj.history_date

    @admin.display(description="via", ordering="history_change_reason")
    def via(self, obj) -> str:
        return obj.history_change_reason or "—"

    @admin.display(description="record", ordering="name")
    def record(self, obj) -> str:
        return obj.name

    @admin.display(description="action", ordering="history_type")
    def action(self, obj) -> str:
        return trail_entry(obj).action

    @admin.display(description="user")
    def who(self, obj) -> str:
        return obj.history_user.get_username() if obj.history_user else "—"

    @admin.display(description="changes")
    def changes(self, obj):
        lines = change_lines(obj, obj.prev_record)
        if not lines:
            return "—"
        return format_html(
            "<ul>{}</ul>", format_html_join("", "<li>{}</li>", ((line,) for line in lines))
        )

    def lookup_allowed(self, lookup, value, request=None):
        # The record's History page links here with ?id=… for all of its changes.
        return lookup == self.model.instance_type._meta.pk.attname or super().lookup_allowed(
            lookup, value, request
        )

    def has_view_permission(self, request, obj=None):
        # Whoever may see the records may see their trail.
        opts = self.model.instance_type._meta
        return request.user.has_perm(f"{opts.app_label}.view_{opts.model_name}") or (
            request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")
        )

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
