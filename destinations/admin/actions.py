"""Admin actions on destinations and deliveries; each calls one service."""

from django.contrib import admin, messages

from ..delivery.outbox import retry_now
from ..models import DeliveryStatus
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


@admin.action(permissions=["change"], description="Retry now")
def retry_now_action(modeladmin, request, queryset):
    failed = queryset.filter(status=DeliveryStatus.FAILED)
    skipped = queryset.count() - failed.count()
    count = retry_now(list(failed))
    modeladmin.message_user(
        request,
        f"{count} failed deliver{'y is' if count == 1 else 'ies are'} due again now; "
        f"the worker will send {'it' if count == 1 else 'them'} with fresh attempt and age limits."
        + (f" {skipped} not failed, left as they are." if skipped else ""),
        level=messages.SUCCESS if count else messages.WARNING,
    )
