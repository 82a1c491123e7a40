"""Key rotation: routing keys proved before they are stored, master keys re-encrypted in batches."""

import io
import json
import logging
import socket
import time
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import CHANGE, LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from destinations.keys import encryption, rotation
from destinations.models import Delivery, Destination
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

OLD_FINGERPRINT = "••••" + ROUTING_KEY[-4:]
NEW_FINGERPRINT = "••••" + OTHER_ROUTING_KEY[-4:]

NEW_MASTER = Fernet.generate_key().decode()
OLD_MASTER = Fernet.generate_key().decode()
UNRELATED_MASTER = Fernet.generate_key().decode()


# Helpers


@pytest.fixture
def caplog_all(caplog):
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.fixture
def superuser(django_user_model):
    return django_user_model.objects.create_superuser("root", "root@example.com", "pw")


def rotate_key(monkeypatch, *args, stdin: str | None = OTHER_ROUTING_KEY + "\n"):
    """Run rotate_routing_key with a piped stdin; return (stdout, stderr)."""
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_routing_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(monkeypatch, *args, **kwargs) -> str:
    """Run rotate_routing_key expecting a refusal; return its message."""
    with pytest.raises(CommandError) as caught:
        rotate_key(monkeypatch, *args, **kwargs)
    assert caught.value.returncode == 1
    return str(caught.value)


def assert_never_shown(*texts: str) -> None:
    for text in texts:
        assert ROUTING_KEY not in text
        assert OTHER_ROUTING_KEY not in text


def stored_key(destination: Destination) -> str:
    return Destination.objects.get(pk=destination.pk).routing_key


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def raw_token(pk) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT routing_key FROM {Destination._meta.db_table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def under(master: str, token: str) -> str:
    return Fernet(master).decrypt(token.encode()).decode()


def make_destinations(count: int) -> list[Destination]:
    """Destinations whose keys are all different and recognisable by their position."""
    rows = []
    for number in range(count):
        dest = Destination(name=f"team {number:05d}")
        dest.set_routing_key(f"{number:05d}".ljust(32, "K"))
        rows.append(dest)
    return Destination.objects.bulk_create(rows)


def rotate_master(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command("rotate_encryption_key", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


# Routing key rotation


def test_a_piped_key_is_proved_stored_stamped_and_audited(
    monkeypatch, destination, fake_pagerduty, superuser, caplog_all
):
    stamped = timezone.now() - timedelta(days=30)
    Destination.objects.filter(pk=destination.pk).update(routing_key_rotated_at=stamped)

    out, err = rotate_key(monkeypatch, destination.name, "--actor", "alice")

    trigger, resolve = fake_pagerduty.events
    assert trigger["routing_key"] == resolve["routing_key"] == OTHER_ROUTING_KEY
    assert trigger["event_action"] == "trigger"
    assert resolve["event_action"] == "resolve"
    assert resolve["dedup_key"] == trigger["dedup_key"]
    stored = Destination.objects.get(pk=destination.pk)
    assert stored.routing_key == OTHER_ROUTING_KEY
    assert stored.routing_key_rotated_at > stamped
    assert f"{OLD_FINGERPRINT} → {NEW_FINGERPRINT}" in out
    assert trigger["dedup_key"] in out
    entry = LogEntry.objects.get(object_id=str(destination.pk))
    assert entry.action_flag == CHANGE
    assert entry.user == superuser  # no account named alice: the first superuser
    assert entry.change_message == (
        f"Rotated the routing key {OLD_FINGERPRINT} → {NEW_FINGERPRINT} by alice "
        f"(command line, tested: dedup_key {trigger['dedup_key']})"
    )
    bodies = json.dumps([d.event for d in Delivery.objects.all()])
    assert_never_shown(out, err, caplog_all.text, bodies, entry.change_message)


def test_the_audit_entry_goes_under_the_operators_own_account(
    monkeypatch, destination, superuser, django_user_model
):
    alice = django_user_model.objects.create_user("alice", password="pw")
    rotate_key(monkeypatch, destination.name, "--skip-test", "--actor", "alice")
    assert LogEntry.objects.get().user == alice


def test_without_any_account_the_log_line_is_the_record(monkeypatch, destination, caplog_all):
    out, _ = rotate_key(monkeypatch, str(destination.pk), "--skip-test", "--actor", "alice")
    assert not LogEntry.objects.exists()
    assert "only audit record" in out
    [line] = [r for r in caplog_all.records if r.name == "destinations.rotation"]
    assert OLD_FINGERPRINT in line.getMessage()
    assert NEW_FINGERPRINT in line.getMessage()
    assert "alice" in line.getMessage()


def test_a_key_pagerduty_refuses_is_not_stored(
    monkeypatch, destination, fake_pagerduty, caplog_all
):
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, status=404)

    message = refused(monkeypatch, destination.name)

    assert message.startswith("PagerDuty refused the new key (404: ")
    assert "Hint: PagerDuty has no integration with this key" in message
    assert message.endswith(f"The old key {OLD_FINGERPRINT} is still in use.")
    assert stored_key(destination) == ROUTING_KEY
    assert not LogEntry.objects.exists()
    assert_never_shown(message, caplog_all.text)


def test_a_malformed_key_is_refused_before_any_request(
    monkeypatch, destination, fake_pagerduty, caplog_all
):
    message = refused(monkeypatch, destination.name, stdin=OTHER_ROUTING_KEY + "X\n")

    assert message == "The integration key must be 32 characters; this one has 33."
    assert fake_pagerduty.received == []
    assert stored_key(destination) == ROUTING_KEY
    assert_never_shown(message, caplog_all.text)


def test_the_current_key_is_refused(monkeypatch, destination, fake_pagerduty):
    message = refused(monkeypatch, destination.name, stdin=f"  {ROUTING_KEY}  \n")

    assert f"already in use ({OLD_FINGERPRINT})" in message
    assert fake_pagerduty.received == []
    assert_never_shown(message)


def test_empty_stdin_is_refused(monkeypatch, destination):
    assert "Standard input held no key" in refused(monkeypatch, destination.name, stdin="")


def test_unreachable_pagerduty_keeps_the_old_key_and_suggests_skip_test(
    monkeypatch, destination, settings, caplog_all
):
    settings.PAGERDUTY_EVENTS_URL = f"http://127.0.0.1:{closed_port()}/v2/enqueue"

    message = refused(monkeypatch, destination.name)

    assert message.startswith("PagerDuty could not be reached to test the new key")
    assert "--skip-test" in message
    assert f"The old key {OLD_FINGERPRINT} is still in use." in message
    assert stored_key(destination) == ROUTING_KEY
    assert_never_shown(message, caplog_all.text)


def test_skip_test_stores_the_key_and_sends_nothing(
    monkeypatch, destination, fake_pagerduty, superuser, caplog_all
):
    out, err = rotate_key(monkeypatch, destination.name, "--skip-test")

    assert fake_pagerduty.received == []
    assert stored_key(destination) == OTHER_ROUTING_KEY
    assert "without a test event (--skip-test)" in out
    assert "not tested: --skip-test" in LogEntry.objects.get().change_message
    assert_never_shown(out, err, caplog_all.text)


def test_the_key_can_come_from_a_file(
    monkeypatch, destination, fake_pagerduty, tmp_path, caplog_all
):
    key_file = tmp_path / "new-key"
    key_file.write_text(OTHER_ROUTING_KEY + "\n")

    out, err = rotate_key(monkeypatch, destination.name, "--from-file", str(key_file), stdin=None)

    assert stored_key(destination) == OTHER_ROUTING_KEY
    assert fake_pagerduty.events[0]["routing_key"] == OTHER_ROUTING_KEY
    assert_never_shown(out, err, caplog_all.text)


def test_a_missing_file_is_a_sentence(monkeypatch, destination, tmp_path):
    message = refused(monkeypatch, destination.name, "--from-file", str(tmp_path / "nope"))
    assert message == f"Cannot read the key from {tmp_path / 'nope'}: No such file or directory."


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_is_prompted_twice_and_the_entries_must_match(
    monkeypatch, destination, fake_pagerduty
):
    monkeypatch.setattr("sys.stdin", Terminal())
    answers = iter([OTHER_ROUTING_KEY, OTHER_ROUTING_KEY[:-1] + "x"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    assert "differ" in refused(monkeypatch, destination.name, stdin=None)
    assert fake_pagerduty.received == []

    answers = iter([OTHER_ROUTING_KEY, OTHER_ROUTING_KEY])
    rotate_key(monkeypatch, destination.name, stdin=None)
    assert stored_key(destination) == OTHER_ROUTING_KEY


def test_a_key_changed_during_the_test_is_not_overwritten(monkeypatch, destination, fake_pagerduty):
    third_key = "A" * 32
    real_send = rotation.send_test_alert

    def send_while_someone_edits(**kwargs):
        outcome = real_send(**kwargs)
        other = Destination.objects.get(pk=destination.pk)
        other.set_routing_key(third_key)
        other.save()
        return outcome

    monkeypatch.setattr(rotation, "send_test_alert", send_while_someone_edits)
    message = refused(monkeypatch, destination.name)

    assert "changed by someone else" in message
    assert stored_key(destination) == third_key


# Encryption key rotation


@pytest.fixture
def under_old_master(db, settings):
    """Five destinations written under OLD_MASTER, then NEW_MASTER put first."""
    settings.FIELD_ENCRYPTION_KEYS = [OLD_MASTER]
    rows = make_destinations(5)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_MASTER, OLD_MASTER]
    return rows


def test_every_value_is_re_encrypted_under_the_first_key(under_old_master, settings, caplog_all):
    plain = {row.pk: under(OLD_MASTER, raw_token(row.pk)) for row in under_old_master}

    out, _ = rotate_master("--batch-size", "2")

    assert out.splitlines()[:3] == [
        "batch 1: 2/5 values checked, 2 re-encrypted",
        "batch 2: 4/5 values checked, 4 re-encrypted",
        "batch 3: 5/5 values checked, 5 re-encrypted",
    ]
    assert {pk: under(NEW_MASTER, raw_token(pk)) for pk in plain} == plain
    [line] = [r for r in caplog_all.records if r.name == "destinations.rotation"]
    assert line.levelno == logging.INFO
    assert "reencrypted=5" in line.getMessage()

    settings.FIELD_ENCRYPTION_KEYS = [NEW_MASTER]
    assert {d.pk: d.routing_key for d in Destination.objects.all()} == plain
    for text in [out, caplog_all.text]:
        assert not any(key in text for key in plain.values())


def test_a_second_run_finds_everything_current(under_old_master):
    rotate_master()
    tokens = [raw_token(row.pk) for row in under_old_master]

    out, _ = rotate_master()

    assert "batch 1: 5/5 values checked, 0 re-encrypted" in out
    assert "5 already under it" in out
    assert [raw_token(row.pk) for row in under_old_master] == tokens


def test_an_interrupted_run_loses_nothing_and_a_rerun_finishes(under_old_master, monkeypatch):
    plain = {row.pk: under(OLD_MASTER, raw_token(row.pk)) for row in under_old_master}
    real_rotate = encryption.rotate
    calls = []

    def interrupted_in_batch_two(token):
        calls.append(token)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_rotate(token)

    monkeypatch.setattr(encryption, "rotate", interrupted_in_batch_two)
    with pytest.raises(KeyboardInterrupt):
        rotate_master("--batch-size", "1")
    first, second, *_ = sorted(plain)
    assert under(NEW_MASTER, raw_token(first)) == plain[first]
    assert under(OLD_MASTER, raw_token(second)) == plain[second]

    out, _ = rotate_master("--batch-size", "1")

    assert "batch 5: 5/5 values checked, 4 re-encrypted" in out
    assert {pk: under(NEW_MASTER, raw_token(pk)) for pk in plain} == plain


def test_an_undecryptable_value_is_named_and_left_untouched(under_old_master):
    broken = under_old_master[2]
    foreign = Fernet(UNRELATED_MASTER).encrypt(ROUTING_KEY.encode()).decode()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Destination._meta.db_table} SET routing_key = %s WHERE id = %s",
            [foreign, broken.pk],
        )
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("rotate_encryption_key", stdout=out, stderr=io.StringIO())

    message = str(caught.value)
    assert f"destination “{broken.name}” (routing_key)" in message
    assert foreign not in message + out.getvalue()
    assert ROUTING_KEY not in message + out.getvalue()
    assert "4 re-encrypted" in out.getvalue()
    assert raw_token(broken.pk) == foreign
    for row in under_old_master:
        if row.pk != broken.pk:
            assert encryption.is_under_first_key(raw_token(row.pk))


def test_check_counts_and_changes_nothing(under_old_master):
    tokens = [raw_token(row.pk) for row in under_old_master]
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("rotate_encryption_key", "--check", stdout=out, stderr=io.StringIO())

    assert "5 value(s) are not yet under the first key" in str(caught.value)
    assert "batch 1: 5/5 values checked, 5 not under the first key" in out.getvalue()
    assert "Nothing was changed." in out.getvalue()
    assert [raw_token(row.pk) for row in under_old_master] == tokens

    rotate_master()
    out, _ = rotate_master("--check")
    assert "0 not yet" in out
    assert "Every encrypted value is under the first key." in out


@pytest.mark.slow  # ten thousand rows
def test_ten_thousand_values_rotate_quickly(db, settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_MASTER]
    make_destinations(10_000)
    settings.FIELD_ENCRYPTION_KEYS = [NEW_MASTER, OLD_MASTER]

    started = time.monotonic()
    out, _ = rotate_master()
    elapsed = time.monotonic() - started

    assert "10000 re-encrypted" in out
    assert elapsed < 5, f"took {elapsed:.1f} s"
    settings.FIELD_ENCRYPTION_KEYS = [NEW_MASTER]
    assert Destination.objects.order_by("pk").last().routing_key == "09999".ljust(32, "K")


# The key age warning


@pytest.mark.parametrize(("days", "warned"), [(91, True), (89, False)])
def test_check_warns_about_keys_older_than_90_days(destination, days, warned):
    Destination.objects.filter(pk=destination.pk).update(
        routing_key_rotated_at=timezone.now() - timedelta(days=days)
    )
    out, err = io.StringIO(), io.StringIO()

    call_command("check", databases=["default"], stdout=out, stderr=err)

    output = out.getvalue() + err.getvalue()
    assert ("destinations.W001" in output) is warned
    assert (destination.name in output) is warned
