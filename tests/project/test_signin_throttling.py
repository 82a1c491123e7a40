"""Wrong passwords at the admin's login form lock that user from that address for a while."""

import io
import logging
import runpy
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command
from django.test import override_settings
from django.urls import reverse

from tests.support.signing_in import (
    STAFF_PASSWORD,
    STAFF_USERNAME,
    make_staff,
    sign_in,
    visible_text,
)

pytestmark = pytest.mark.django_db

WRONG = "Tr0ub4dor&3-wrong"
SETTINGS_FILE = Path(__file__).resolve().parents[2] / "project" / "settings.py"


@pytest.fixture
def staff(db):
    return make_staff()


def locked_text(response) -> str:
    assert response.status_code == 429, response.status_code
    return visible_text(response)


def lock_out(client, **extra) -> None:
    for _ in range(4):
        assert sign_in(client, WRONG, **extra).status_code == 200  # the form again, with an error
    assert sign_in(client, WRONG, **extra).status_code == 429


def admin_opens(client) -> bool:
    return client.get(reverse("admin:index")).status_code == 200


def age_attempts(by: timedelta) -> None:
    """As if the failed attempts had been made `by` earlier: the clock moved on."""
    for attempt in AccessAttempt.objects.all():
        attempt.attempt_time -= by
        attempt.save(update_fields=["attempt_time"])


def test_five_wrong_passwords_lock_the_account_and_the_page_says_for_how_long(client, staff):
    lock_out(client)

    refused = sign_in(client, STAFF_PASSWORD)

    text = locked_text(refused)
    assert "Sign-in locked: too many wrong passwords." in text
    assert f"After 5 failed sign-ins for {STAFF_USERNAME}" in text
    assert "locked for 15 minutes after the last attempt" in text
    assert f"python manage.py axes_reset_username {STAFF_USERNAME}" in text
    assert "Traceback" not in text
    assert not admin_opens(client)


def test_four_wrong_passwords_do_not_lock(client, staff):
    for _ in range(4):
        sign_in(client, WRONG)

    assert sign_in(client, STAFF_PASSWORD).status_code == 302
    assert admin_opens(client)


def test_a_right_password_clears_the_count(client, staff):
    for _ in range(4):
        sign_in(client, WRONG)
    sign_in(client, STAFF_PASSWORD)
    client.logout()

    for _ in range(4):
        assert sign_in(client, WRONG).status_code == 200
    assert sign_in(client, STAFF_PASSWORD).status_code == 302


def test_the_lock_ends_when_the_cool_off_has_passed(client, staff):
    lock_out(client)
    age_attempts(timedelta(minutes=14))
    assert sign_in(client, STAFF_PASSWORD).status_code == 429  # still locked; the wait restarts

    age_attempts(timedelta(minutes=16))
    answer = sign_in(client, STAFF_PASSWORD)

    assert answer.status_code == 302 and answer["Location"] == "/admin/"
    assert admin_opens(client)


@override_settings(AXES_COOLOFF_TIME=timedelta(minutes=90))
def test_the_page_names_the_configured_cool_off(client, staff):
    lock_out(client)

    assert "locked for 90 minutes after the last attempt" in locked_text(
        sign_in(client, STAFF_PASSWORD)
    )


@pytest.mark.parametrize(
    "unlock",
    [
        ("axes_reset",),
        ("axes_reset_username", STAFF_USERNAME),
        ("axes_reset_ip", "127.0.0.1"),
        ("axes_reset_ip_username", "127.0.0.1", STAFF_USERNAME),
    ],
    ids=lambda command: command[0],
)
def test_the_reset_commands_unlock_at_once(client, staff, unlock):
    lock_out(client)

    said = io.StringIO()
    call_command(*unlock, stdout=said)

    assert said.getvalue() == "1 attempts removed.\n"

    assert sign_in(client, STAFF_PASSWORD).status_code == 302
    assert admin_opens(client)


def test_the_lock_is_for_that_user_from_that_address_only(client, staff):
    make_staff("second-admin")
    lock_out(client)

    elsewhere = client.__class__(REMOTE_ADDR="10.0.0.9")
    assert sign_in(elsewhere, STAFF_PASSWORD).status_code == 302
    assert sign_in(client, STAFF_PASSWORD, username="second-admin").status_code == 302


def test_failures_and_the_lockout_are_logged_with_user_and_address_never_the_password(
    client, staff, caplog
):
    with caplog.at_level(logging.INFO, logger="axes"):
        lock_out(client)
        sign_in(client, STAFF_PASSWORD)

    lines = [record.getMessage() for record in caplog.records if record.name.startswith("axes")]
    locked = [line for line in lines if "Locking out" in line]
    assert locked, lines
    assert f'username: "{STAFF_USERNAME}"' in locked[0]
    assert 'ip_address: "127.0.0.1"' in locked[0]
    logged = "\n".join(lines)
    assert WRONG not in logged and STAFF_PASSWORD not in logged
    stored = "\n".join(AccessAttempt.objects.values_list("post_data", flat=True))
    assert WRONG not in stored and STAFF_PASSWORD not in stored


def settings_with(monkeypatch, **environment) -> dict:
    """project/settings.py as a fresh process would read it under `environment`."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    values = runpy.run_path(str(SETTINGS_FILE))
    return {
        name: values[name]
        for name in ("AXES_IPWARE_META_PRECEDENCE_ORDER", "AXES_IPWARE_PROXY_COUNT")
        if name in values
    }


def test_behind_the_tls_proxy_the_address_is_the_one_the_proxy_forwarded(
    client, staff, monkeypatch
):
    proxied = settings_with(monkeypatch, BEHIND_TLS_PROXY="True")
    via_proxy = {"REMOTE_ADDR": "10.0.0.2"}
    with override_settings(**proxied):
        attacker = client.__class__(HTTP_X_FORWARDED_FOR="203.0.113.7", **via_proxy)
        lock_out(attacker)
        # Another person through the same proxy is not locked out with the attacker.
        colleague = client.__class__(HTTP_X_FORWARDED_FOR="198.51.100.4", **via_proxy)
        assert sign_in(colleague, STAFF_PASSWORD).status_code == 302

    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}


def test_without_the_proxy_a_forwarded_address_is_not_believed(client, staff, monkeypatch):
    direct = settings_with(monkeypatch, BEHIND_TLS_PROXY="False")
    with override_settings(**direct):
        for number in range(5):
            # A client naming a new address each time must not escape the lock.
            attacker = client.__class__(HTTP_X_FORWARDED_FOR=f"203.0.113.{number}")
            sign_in(attacker, WRONG)
        assert sign_in(client, STAFF_PASSWORD).status_code == 429
