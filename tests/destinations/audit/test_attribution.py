"""Changes made outside the admin are kept too, under who made them and how."""

import getpass
import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command

from destinations.audit.trail import audit_trail
from destinations.models import Destination
from detections.models import Detection
from tests.support.audit_trail import assert_trail_holds_no_secret
from tests.support.factories import make_destination
from tests.support.routing_keys import MASKED_KEY, OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db

SITE = """
destinations:
  - name: SecOps on-call
    routing_key: {is_secret: true, from_env: SECOPS_ROUTING_KEY}
    severity: {value: warning}
detections:
  - name: Suspicious Login Attempts
    severity: HIGH
    destinations: [SecOps on-call]
"""
OPERATOR = "root"


@pytest.fixture(autouse=True)
def _operator(monkeypatch):
    monkeypatch.setattr(getpass, "getuser", lambda: OPERATOR)


def latest(model, name: str):
    """The newest trail entry of the record named `name`."""
    record = model.history.filter(name=name).latest()
    return audit_trail(model, record.instance.pk)[0]


def apply(path) -> None:
    call_command("apply_config", str(path), stdout=io.StringIO())


def test_apply_config_changes_are_kept_under_the_command_its_file_and_the_operator(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("SECOPS_ROUTING_KEY", ROUTING_KEY)
    path = tmp_path / "destinations.yml"
    path.write_text(SITE)
    apply(path)
    path.write_text(SITE.replace("{value: warning}", "{value: critical}"))
    monkeypatch.setenv("SECOPS_ROUTING_KEY", OTHER_ROUTING_KEY)

    apply(path)

    via = f"apply_config {path} (by {OPERATOR})"
    change = latest(Destination, "SecOps on-call")
    assert change.via == via
    assert change.who == "—"  # no account: the operator is named in the via
    assert set(change.lines) == {
        "key changed (••••" + OTHER_ROUTING_KEY[-4:] + ")",
        "severity override: warning → critical",
    }
    created = latest(Detection, "Suspicious Login Attempts")
    assert created.via == via
    assert created.action == "created"
    assert "destinations: SecOps on-call" in created.lines
    # A second apply of the same file changes nothing, and keeps nothing more.
    count = Destination.history.count()
    apply(path)
    assert Destination.history.count() == count
    assert_trail_holds_no_secret()


def test_a_dry_run_keeps_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SECOPS_ROUTING_KEY", ROUTING_KEY)
    path = tmp_path / "destinations.yml"
    path.write_text(SITE)

    call_command("apply_config", str(path), "--dry-run", stdout=io.StringIO())

    assert not Destination.history.exists()
    assert not Detection.history.exists()


def test_a_record_the_file_no_longer_names_is_kept_as_unmanaged(tmp_path, monkeypatch):
    monkeypatch.setenv("SECOPS_ROUTING_KEY", ROUTING_KEY)
    path = tmp_path / "destinations.yml"
    path.write_text(SITE)
    apply(path)
    path.write_text("destinations: []\ndetections: []\n")

    apply(path)

    assert f"managed by: {path} → (blank)" in latest(Destination, "SecOps on-call").lines


def test_rotate_routing_key_is_kept_under_the_command_and_its_actor(monkeypatch, fake_pagerduty):
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    monkeypatch.setattr("sys.stdin", io.StringIO(OTHER_ROUTING_KEY + "\n"))

    call_command("rotate_routing_key", destination.name, "--actor", "alice", stdout=io.StringIO())

    change = audit_trail(Destination, destination.pk)[0]
    assert change.via == "rotate_routing_key (by alice)"
    assert change.lines == ("key changed (••••" + OTHER_ROUTING_KEY[-4:] + ")",)
    assert_trail_holds_no_secret()


def test_re_encryption_is_kept_as_such_never_as_a_key_change(settings):
    old_master, new_master = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old_master]
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    settings.FIELD_ENCRYPTION_KEYS = [new_master, old_master]

    call_command("rotate_encryption_key", stdout=io.StringIO())

    reencrypted, created = audit_trail(Destination, destination.pk)
    assert reencrypted.via == f"rotate_encryption_key (by {OPERATOR})"
    assert reencrypted.lines == (
        "key re-encrypted under the first encryption key (the key itself is unchanged)",
    )
    assert f"key set ({MASKED_KEY})" in created.lines
    assert not any("key changed" in line for line in reencrypted.lines)
    assert_trail_holds_no_secret()
    # A check only reads: it keeps nothing.
    call_command("rotate_encryption_key", "--check", stdout=io.StringIO())
    assert len(audit_trail(Destination, destination.pk)) == 2
