"""Admin actions on destinations and deliveries; each calls one service."""

from django.contrib import admin, messages

from ..delivery.outbox import UNSTORED_KEY_TEST, retry_now
from ..models import Delivery, DeliveryKind, DeliveryStatus
from ..services import TestAlertOutcome, set_enabled
from ..services import send_test_alert as send_test_alert_service

# How to ask for the resolve, as each place that sends a test alert offers it.
RESOLVE_CHECKBOX = "tick “resolve right after” to leave none open next time"
RESOLVE_ACTION = "use the action “Send test alert and resolve it right after” to leave none open"


def test_alert_level(outcome: TestAlertOutcome) -> int:
    """The message level of a test's outcome: an error, a warning when its resolve failed."""
    if not outcome.accepted:
        return messages.ERROR
    if outcome.resolve_result is not None and not outcome.resolve_result.accepted:
        return messages.WARNING
    return messages.SUCCESS


def report_test_alert(
    modeladmin, request, destination, *, resolve: bool, resolve_option: str = RESOLVE_ACTION
) -> None:
    """Send one test alert and show the admin PagerDuty's answer."""
    outcome = send_test_alert_service(
        destination=destination, sent_by=request.user.get_username(), resolve=resolve
    )
    modeladmin.message_user(
        request, outcome.summary(resolve_option=resolve_option), level=test_alert_level(outcome)
    )


@admin.action(permissions=["change"], description="Send test alert")
def send_test_alert(modeladmin, request, queryset):
    for destination in queryset.order_by("name"):
        report_test_alert(modeladmin, request, destination, resolve=False)


@admin.action(permissions=["change"], description="Send test alert and resolve it right after")
def send_test_alert_and_resolve(modeladmin, request, queryset):
    for destination in queryset.order_by("name"):
        report_test_alert(modeladmin, request, destination, resolve=True)


@admin.action(permissions=["change"], description="Enable selected %(verbose_name_plural)s")
def enable_selected(modeladmin, request, queryset):
    report_enabled(modeladmin, request, queryset, enabled=True)


@admin.action(permissions=["change"], description="Disable selected %(verbose_name_plural)s")
def disable_selected(modeladmin, request, queryset):
    report_enabled(modeladmin, request, queryset, enabled=False)


def report_enabled(modeladmin, request, queryset, *, enabled: bool) -> None:
    """Enable or disable the selected records (each change kept in the audit trail)."""
    outcome = set_enabled(records=queryset, enabled=enabled)
    opts = queryset.model._meta
    done = "enabled" if enabled else "disabled"
    names = opts.verbose_name if outcome.changed == 1 else opts.verbose_name_plural
    message = f"{outcome.changed} {names} {done}."
    if outcome.managed:
        message += (
            f" {outcome.managed} managed by a configuration file left unchanged: change "
            f"{'it' if outcome.managed == 1 else 'them'} in the file."
        )
    modeladmin.message_user(request, message, level=messages.SUCCESS)


@admin.action(permissions=["change"], description="Retry now")
def retry_now_action(modeladmin, request, queryset):
    failed = queryset.filter(status=DeliveryStatus.FAILED)
    skipped = queryset.count() - failed.count()
    key_tests = failed.filter(UNSTORED_KEY_TEST).count()
    requeued = list(failed.exclude(UNSTORED_KEY_TEST))
    count = retry_now(requeued)
    modeladmin.message_user(
        request,
        f"{count} failed deliver{'y is' if count == 1 else 'ies are'} due again now; "
        f"the worker will send {'it' if count == 1 else 'them'} with fresh attempt and age limits."
        + _about_tests(requeued)
        + (
            f" {key_tests} test{'' if key_tests == 1 else 's'} of a new routing key during a key "
            "rotation left as failed: that key was never stored, so it cannot be sent again. "
            "Run rotate_routing_key again to test a new key."
            if key_tests
            else ""
        )
        + (f" {skipped} not failed, left as they are." if skipped else ""),
        level=messages.SUCCESS if count else messages.WARNING,
    )


def _about_tests(deliveries: list[Delivery]) -> str:
    """What happens to the test alerts among re-queued deliveries, for the admin's message."""
    tests = [delivery for delivery in deliveries if delivery.kind == DeliveryKind.TEST]
    if not tests:
        return ""
    resolved = sum(delivery.resolve_after for delivery in tests)
    text = f" {len(tests)} {'is a test alert' if len(tests) == 1 else 'are test alerts'}"
    if resolved:
        text += (
            f"; {'it' if resolved == 1 else f'{resolved} of them'} will be resolved after "
            "being delivered, as the test asked"
        )
    return text + "."
