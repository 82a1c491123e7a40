"""Admin actions and views on destinations; each calls one service."""

from django.contrib import admin, messages

from ..services import send_test_alert as send_test_alert_service


def report_test_alert(modeladmin, request, destination, *, resolve: bool) -> None:
    """Send one test alert and show the admin PagerDuty's answer."""
    outcome = send_test_alert_service(
        destination=destination, sent_by=request.user.get_username(), resolve=resolve
    )
    level = messages.SUCCESS if outcome.accepted else messages.ERROR
    if outcome.accepted and outcome.resolve_result and not outcome.resolve_result.accepted:
        level = messages.WARNING
    modeladmin.message_user(request, outcome.summary(), level=level)


@admin.action(permissions=["change"], description="Send test alert")
def send_test_alert(modeladmin, request, queryset):
    for destination in queryset.order_by("name"):
        report_test_alert(modeladmin, request, destination, resolve=False)


@admin.action(permissions=["change"], description="Send test alert and resolve it right after")
def send_test_alert_and_resolve(modeladmin, request, queryset):
    for destination in queryset.order_by("name"):
        report_test_alert(modeladmin, request, destination, resolve=True)
