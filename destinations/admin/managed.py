"""Records a configuration file manages: read-only in the admin, with a notice saying where."""

from ..configuration import managed_notice


class ManagedRecordAdmin:
    """A ModelAdmin mixin for models with `managed_by`: such a record changes in its file only."""

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
        record = self.get_object(request, object_id)
        notice = managed_notice(record.managed_by) if record and record.managed_by else ""
        extra_context = {**(extra_context or {}), "managed_notice": notice}
        return super().change_view(request, object_id, form_url, extra_context)
