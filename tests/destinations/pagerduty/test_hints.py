"""The hint an admin reads after a test alert PagerDuty refused: chosen by what PagerDuty said."""

import html

import pytest
from django.urls import reverse

from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from destinations.pagerduty.errors import (
    DISABLED_KEY_HINT,
    EVENT_FIELD_HINT,
    MALFORMED_KEY_HINT,
    NO_INTEGRATION_HINT,
    UNKNOWN_KEY_HINT,
    EventRejected,
    RateLimited,
    ServerError,
)
from tests.support.admin_pages import shown_messages
from tests.support.fake_pagerduty import Fault
from tests.support.fake_pagerduty.validation import validate_event
from tests.support.routing_keys import ROUTING_KEY

LIST_URL = reverse("admin:destinations_destination_changelist")
INVALID_EVENT = "Event object is invalid"

pytestmark = pytest.mark.django_db

# A trigger as this product sends it, with one thing wrong each time: the fake's validator then
# words the refusal as the fake does for that case.
VALID_EVENT = {
    "routing_key": ROUTING_KEY,
    "event_action": "trigger",
    "dedup_key": "test-0123456789abcdef",
    "payload": {"summary": "Test alert from SecOps on-call", "severity": "info", "source": "test"},
}


def fakes_words(**changes) -> list[str]:
    """The errors the fake PagerDuty gives for the valid event with `changes` (None drops)."""
    event = {**VALID_EVENT, "payload": dict(VALID_EVENT["payload"])}
    for name, value in changes.items():
        where = event["payload"] if name in event["payload"] else event
        if value is None:
            del where[name]
        else:
            where[name] = value
    problems = validate_event(event)
    assert problems
    return problems


def invalid_event(*errors: str) -> Fault:
    return Fault.status(
        400, body={"status": "invalid event", "message": INVALID_EVENT, "errors": list(errors)}
    )


def refused(status: int):
    return lambda fake: fake.refuse_key(ROUTING_KEY, status=status)


def answers(fault: Fault):
    return lambda fake: fake.inject(fault, times=1)


CASES = {
    # PagerDuty's 400 for a well-formed key it does not know: the key's format is not the cause.
    "unknown key (400)": (refused(400), 400, ["Invalid routing key"], UNKNOWN_KEY_HINT),
    "unknown key (401)": (refused(401), 401, [], UNKNOWN_KEY_HINT),
    "disabled integration (403)": (refused(403), 403, [], DISABLED_KEY_HINT),
    "no integration (404)": (refused(404), 404, [], NO_INTEGRATION_HINT),
    "wrong length, PagerDuty's words": (
        answers(invalid_event("Length of 'routing_key' is incorrect (should be 32 characters)")),
        400,
        ["Length of 'routing_key' is incorrect (should be 32 characters)"],
        MALFORMED_KEY_HINT,
    ),
    "wrong length, the fake's words": (
        answers(invalid_event(*fakes_words(routing_key="A" * 20))),
        400,
        ["routing_key must be 32 characters; got 20"],
        MALFORMED_KEY_HINT,
    ),
    "missing field, PagerDuty's words": (
        answers(invalid_event("'payload.summary' is missing or blank")),
        400,
        ["'payload.summary' is missing or blank"],
        EVENT_FIELD_HINT,
    ),
    "missing field, the fake's words": (
        answers(invalid_event(*fakes_words(severity=None))),
        400,
        ["payload.severity is required"],
        EVENT_FIELD_HINT,
    ),
    "400 saying nothing more": (answers(invalid_event()), 400, [], EventRejected.hint),
    "rate limited (429)": (answers(Fault.status(429)), 429, [], RateLimited.hint),
    "PagerDuty failing (500)": (answers(Fault.status(500)), 500, [], ServerError.hint),
}


@pytest.mark.parametrize(("answer", "status", "errors", "hint"), CASES.values(), ids=CASES.keys())
def test_the_admin_reads_the_hint_for_what_pagerduty_said(
    admin_client, destination, fake_pagerduty, answer, status, errors, hint
):
    answer(fake_pagerduty)

    response = admin_client.post(
        LIST_URL,
        {"action": "send_test_alert", "_selected_action": [destination.pk]},
        follow=True,
    )

    [message] = shown_messages(response)
    assert message.startswith(f"Test alert to “SecOps on-call” failed: PagerDuty answered {status}")
    assert all(error in message for error in errors)
    assert message.endswith(f"Hint: {hint}")
    # The page shows it as said, and never the key.
    page = html.unescape(response.content.decode())
    assert f"Hint: {hint}" in page
    assert ROUTING_KEY not in page
    # The delivery log keeps PagerDuty's answer that the hint was chosen from.
    delivery = Delivery.objects.get()
    assert (delivery.kind, delivery.status) == (DeliveryKind.TEST, DeliveryStatus.FAILED)
    assert delivery.last_status_code == status
    assert delivery.pagerduty_errors == errors
    if status == 400:
        assert delivery.pagerduty_message == INVALID_EVENT
