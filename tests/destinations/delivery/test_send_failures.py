"""Every failure is an attempt: unreadable answers, unforeseen errors, answers too odd to store."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus, Destination
from destinations.pagerduty import client as pagerduty_client
from destinations.pagerduty.client import Accepted
from destinations.pagerduty.errors import ServerError
from tests.support.factories import make_destination, queue_event
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

# A 202 whose body opens 60,000 arrays: more nesting than Python's JSON parser follows.
NESTED_BODY = b"[" * 60_000
MAX_ATTEMPTS = 5
FINGERPRINT = "••••" + ROUTING_KEY[-4:]
QUEUED = 3


@pytest.fixture
def fast_retries(settings):
    """Few attempts and no backoff, so one `deliver_alerts --once` runs a delivery to its end."""
    settings.DELIVERY_MAX_ATTEMPTS = MAX_ATTEMPTS
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 0.0
    settings.DELIVERY_BACKOFF_MAX_SECONDS = 0.0


@pytest.fixture
def queued(transactional_db, fake_pagerduty, fast_retries) -> list[Delivery]:
    """Three triggers due now for one destination, each for its own incident."""
    destination = make_destination("SecOps", ROUTING_KEY)
    return [queue_event(destination, f"incident-{n}") for n in range(QUEUED)]


def raising(key: str = ROUTING_KEY):
    """Stands for any bug: a function raising what no one foresaw, its message quoting the key."""

    def fail(*args, **kwargs):
        raise RuntimeError(f"cannot handle the answer to {{'routing_key': '{key}'}}")

    return fail


def deliver(capsys) -> str:
    call_command("deliver_alerts", "--once")
    return capsys.readouterr().out


def attempts_of(delivery: Delivery) -> list[tuple[int, str, str]]:
    return list(delivery.attempt_log.order_by("number").values_list("number", "result", "error"))


# The worker


def test_a_202_nested_too_deep_to_read_is_delivered_once(queued, fake_pagerduty, capsys):
    fake_pagerduty.inject(Fault.status(202, body=NESTED_BODY), times=None)

    out = deliver(capsys)

    assert f"delivered {QUEUED}, retrying 0, failed 0" in out
    # Each event went out once: PagerDuty took it, so nothing is sent again.
    assert sorted(r.json["dedup_key"] for r in fake_pagerduty.received) == [
        f"incident-{n}" for n in range(QUEUED)
    ]
    for delivery in queued:
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.DELIVERED
        assert (delivery.attempts, delivery.last_status_code) == (1, 202)
        assert delivery.pagerduty_message == "unreadable answer"
        assert delivery.pagerduty_dedup_key == ""
        [attempt] = delivery.attempt_log.all()
        assert (attempt.status_code, attempt.result) == (202, "delivered")
        assert attempt.response_excerpt.startswith("[[[[")


@pytest.mark.parametrize(
    ("target", "posts_per_delivery"),
    [
        # After the post, on reading the answer: PagerDuty saw every attempt.
        ("destinations.pagerduty.client.parse_answer", MAX_ATTEMPTS),
        # Before anything is sent, as a stored region events_url() does not know would.
        ("destinations.delivery.attempts.events_url", 0),
    ],
    ids=["on-every-answer", "before-sending"],
)
def test_an_exception_on_every_attempt_fails_after_exactly_the_attempt_limit(
    queued, fake_pagerduty, monkeypatch, capsys, target, posts_per_delivery
):
    monkeypatch.setattr(target, raising())

    out = deliver(capsys)

    assert f"delivered 0, retrying {QUEUED * (MAX_ATTEMPTS - 1)}, failed {QUEUED}" in out
    assert len(fake_pagerduty.received) == QUEUED * posts_per_delivery
    sentence = (
        f"Unexpected error: RuntimeError: cannot handle the answer to "
        f"{{'routing_key': '{FINGERPRINT}'}}"
    )
    for delivery in queued:
        delivery.refresh_from_db()
        assert delivery.status == DeliveryStatus.FAILED
        assert delivery.attempts == MAX_ATTEMPTS
        assert delivery.last_error == (
            f"{sentence} — gave up after {MAX_ATTEMPTS} attempts (DELIVERY_MAX_ATTEMPTS)"
        )
        assert delivery.lease_token is None
        assert attempts_of(delivery) == [(n, "retry", sentence) for n in range(1, MAX_ATTEMPTS)] + [
            (MAX_ATTEMPTS, "failed", sentence)
        ]
    assert ROUTING_KEY not in "".join(DeliveryAttempt.objects.values_list("error", flat=True))


def test_an_exception_past_the_age_limit_fails_at_once(queued, monkeypatch, capsys):
    monkeypatch.setattr("destinations.pagerduty.client.parse_answer", raising())
    Delivery.objects.update(queued_at=timezone.now() - timedelta(hours=7))

    deliver(capsys)

    for delivery in queued:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1)
        assert "(DELIVERY_MAX_AGE_SECONDS)" in delivery.last_error


def answer_that_cannot_be_stored(outcome):
    """Wrap the parser so its result carries a lone surrogate, which no database driver encodes."""
    real_parse = pagerduty_client.parse_answer

    def parse(**kwargs):
        real_parse(**kwargs)
        return outcome

    return parse


def test_an_accepted_answer_that_cannot_be_stored_is_stored_without_its_text(
    queued, fake_pagerduty, monkeypatch, capsys
):
    accepted = Accepted(
        status_code=202,
        message="Event processed \ud800",
        dedup_key="srv-\ud800",
        response_excerpt="{}",
        duration_ms=3,
    )
    monkeypatch.setattr(
        "destinations.pagerduty.client.parse_answer", answer_that_cannot_be_stored(accepted)
    )

    out = deliver(capsys)

    assert f"delivered {QUEUED}, retrying 0, failed 0" in out
    assert len(fake_pagerduty.received) == QUEUED  # not sent again at lease expiry
    for delivery in queued:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
        assert delivery.pagerduty_message == "the answer (202) could not be recorded: " + (
            "UnicodeEncodeError"
        )
        [attempt] = delivery.attempt_log.all()
        assert (attempt.status_code, attempt.result) == (202, "delivered")


def test_a_failed_answer_that_cannot_be_stored_is_retried_within_the_limit(
    queued, fake_pagerduty, monkeypatch, capsys
):
    refused = ServerError("Service Unavailable", status_code=503, errors=["down \ud800"])
    monkeypatch.setattr(
        "destinations.pagerduty.client.parse_answer", answer_that_cannot_be_stored(refused)
    )

    out = deliver(capsys)

    assert f"failed {QUEUED}" in out
    assert len(fake_pagerduty.received) == QUEUED * MAX_ATTEMPTS
    sentence = "Unexpected error: the answer (503) could not be recorded: UnicodeEncodeError"
    for delivery in queued:
        delivery.refresh_from_db()
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, MAX_ATTEMPTS)
        assert [error for _, _, error in attempts_of(delivery)] == [sentence] * MAX_ATTEMPTS


def test_nul_and_lone_surrogates_in_an_answer_are_stored_replaced(queued, fake_pagerduty, capsys):
    # JSON escapes both; PostgreSQL refuses NUL in text, and no driver encodes a lone surrogate.
    fake_pagerduty.inject(
        Fault.status(202, body=b'{"message": "queued\\u0000 \\ud800", "dedup_key": "k\\u0000"}'),
        times=None,
    )

    assert f"delivered {QUEUED}" in deliver(capsys)

    for delivery in queued:
        delivery.refresh_from_db()
        assert delivery.pagerduty_message == "queued\ufffd \ufffd"
        assert delivery.pagerduty_dedup_key == "k\ufffd"


# The admin and the commands


def button_url(destination: Destination) -> str:
    return reverse("admin:destinations_destination_test_alert", args=[destination.pk])


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def test_the_button_reports_an_unreadable_answer(admin_client, destination, fake_pagerduty):
    fake_pagerduty.inject(Fault.status(202, body=NESTED_BODY))

    response = admin_client.post(button_url(destination), follow=True)

    assert response.status_code == 200
    [message] = shown_messages(response)
    assert "“SecOps on-call” accepted by PagerDuty (202): “unreadable answer”" in message
    assert Delivery.objects.get().status == DeliveryStatus.DELIVERED


@pytest.mark.parametrize("debug", [False, True])
def test_the_button_reports_an_unexpected_error_without_the_key(
    admin_client, destination, fake_pagerduty, monkeypatch, settings, debug
):
    settings.DEBUG = debug  # a 500 page with DEBUG on would show the key among frame locals
    monkeypatch.setattr("destinations.pagerduty.client.parse_answer", raising())

    response = admin_client.post(button_url(destination), follow=True)

    assert response.status_code == 200
    [message] = shown_messages(response)
    assert message.startswith(
        "Test alert to “SecOps on-call” failed: Unexpected error: RuntimeError: cannot handle "
        f"the answer to {{'routing_key': '{FINGERPRINT}'}}. Hint: An error in this server"
    )
    assert ROUTING_KEY not in response.content.decode()
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.FAILED  # a test alert is not retried
    assert delivery.attempt_log.get().error.startswith("Unexpected error: RuntimeError")


def test_the_action_reports_each_destination_in_a_sentence(
    admin_client, destination, fake_pagerduty, monkeypatch
):
    other = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    # No key quoted: each destination's send would quote its own, and this one is shared.
    monkeypatch.setattr("destinations.delivery.attempts.events_url", raising(key=""))

    response = admin_client.post(
        reverse("admin:destinations_destination_changelist"),
        {"action": "send_test_alert", "_selected_action": [destination.pk, other.pk]},
        follow=True,
    )

    assert response.status_code == 200
    messages = shown_messages(response)
    assert [m.split(":")[0] for m in messages] == [
        "Test alert to “Platform on-call” failed",
        "Test alert to “SecOps on-call” failed",
    ]
    assert all("Unexpected error: RuntimeError" in m for m in messages)
    assert fake_pagerduty.received == []


def test_send_test_alert_reports_an_unreadable_answer(destination, fake_pagerduty, capsys):
    fake_pagerduty.inject(Fault.status(202, body=NESTED_BODY), times=None)

    call_command("send_test_alert", "SecOps on-call", "--resolve")

    out = capsys.readouterr().out
    assert "accepted by PagerDuty (202): “unreadable answer”" in out
    assert "resolved right after" in out


def test_send_test_alert_fails_with_a_sentence(destination, fake_pagerduty, monkeypatch):
    monkeypatch.setattr("destinations.pagerduty.client.parse_answer", raising())

    with pytest.raises(CommandError) as caught:
        call_command("send_test_alert", "SecOps on-call")

    assert caught.value.returncode == 1
    assert "failed: Unexpected error: RuntimeError: cannot handle the answer" in str(caught.value)
    assert ROUTING_KEY not in str(caught.value)


def rotate(monkeypatch, destination: Destination) -> str:
    monkeypatch.setattr("sys.stdin", io.StringIO(OTHER_ROUTING_KEY + "\n"))
    out = io.StringIO()
    call_command("rotate_routing_key", destination.name, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_rotate_routing_key_refuses_with_a_sentence_and_keeps_the_old_key(
    destination, fake_pagerduty, monkeypatch
):
    # The new key is the one being sent, so it is the one the failure quotes.
    monkeypatch.setattr("destinations.pagerduty.client.parse_answer", raising(OTHER_ROUTING_KEY))

    with pytest.raises(CommandError) as caught:
        rotate(monkeypatch, destination)

    assert caught.value.returncode == 1
    assert str(caught.value) == (
        "The new key could not be tested (RuntimeError: cannot handle the answer to "
        "{'routing_key': '••••" + OTHER_ROUTING_KEY[-4:] + "'}). Hint: this is an error in this "
        "server, not PagerDuty's answer; look for delivery.unexpected_failure in the log and "
        f"try again. The old key {FINGERPRINT} is still in use."
    )
    destination.refresh_from_db()
    assert destination.routing_key == ROUTING_KEY


def test_rotate_routing_key_takes_an_unreadable_acceptance(
    destination, fake_pagerduty, monkeypatch
):
    fake_pagerduty.inject(Fault.status(202, body=NESTED_BODY), times=None)

    out = rotate(monkeypatch, destination)

    assert "accepted by PagerDuty (202): “unreadable answer”" in out
    destination.refresh_from_db()
    assert destination.routing_key == OTHER_ROUTING_KEY
