"""Backups: dumpdata carries each key as a token; loaddata restores destinations that page."""

import json
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.core.management.base import SystemCheckError
from django.db import IntegrityError, transaction
from django.forms.models import model_to_dict

from destinations.models import Delivery, DeliveryStatus, Destination
from tests.support.factories import drain, make_destination, make_detection, queue_event
from tests.support.leak_guard import find_secrets
from tests.support.routing_keys import ROUTING_KEY

pytestmark = pytest.mark.django_db(transaction=True)

NAME = "SecOps on-call"
LOST_KEY = Fernet.generate_key().decode()


def dump(path, *labels, fmt="json"):
    """Write a backup as the README says to take one."""
    call_command(
        "dumpdata",
        *(labels or ("destinations", "detections", "auth.user")),
        output=str(path),
        format=fmt,
    )
    return path.read_text()


def fresh_database():
    """Empty every table, as a new database would be before the restore."""
    call_command("flush", interactive=False, verbosity=0)
    assert not Destination.objects.exists()


def fixture(path, **fields):
    """A one-destination fixture with these fields, as an older or edited dump would hold."""
    path.write_text(
        json.dumps(
            [
                {
                    "model": "destinations.destination",
                    "pk": 1,
                    "fields": {
                        "name": NAME,
                        "enabled": True,
                        "region": "us",
                        "timeout_seconds": 30,
                        "custom_details": {},
                        "created_at": "2026-11-26T12:00:00Z",
                        "updated_at": "2026-11-26T12:00:00Z",
                        **fields,
                    },
                }
            ]
        )
    )
    return str(path)


@pytest.mark.parametrize("fmt", ["json", "jsonl", "xml"])
def test_a_restored_destination_pages_with_its_original_key(
    tmp_path, destination, fake_pagerduty, capsys, fmt
):
    make_detection("Suspicious Login Attempts", destination)
    get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    stamped = destination.routing_key_rotated_at
    backup = dump(tmp_path / f"d.{fmt}", fmt=fmt)
    assert find_secrets(backup) == []  # no form of the key, only a token
    assert "gAAAAA" in backup

    fresh_database()
    call_command("loaddata", str(tmp_path / f"d.{fmt}"), verbosity=0)

    restored = Destination.objects.get(name=NAME)
    assert restored.routing_key == ROUTING_KEY
    # The key's age survives the restore (JSON keeps times to the millisecond).
    assert abs(restored.routing_key_rotated_at - stamped) < timedelta(milliseconds=1)
    assert restored.detections.get().name == "Suspicious Login Attempts"
    # No E002/E003: the restored key is readable and not empty.
    call_command("check", databases=["default"])
    call_command("send_test_alert", NAME)
    assert "accepted by PagerDuty (202)" in capsys.readouterr().out
    [event] = fake_pagerduty.events
    assert event["routing_key"] == ROUTING_KEY


def test_a_backup_restores_where_a_new_first_key_was_added(tmp_path, destination, settings):
    dump(tmp_path / "d.json")
    fresh_database()
    # The new database's settings put a fresh key first and keep the dumped one after it.
    settings.FIELD_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    call_command("loaddata", str(tmp_path / "d.json"), verbosity=0)
    assert Destination.objects.get().routing_key == ROUTING_KEY


def test_a_backup_refuses_to_load_under_keys_that_cannot_read_it(tmp_path, destination, settings):
    dump(tmp_path / "d.json")
    fresh_database()
    settings.FIELD_ENCRYPTION_KEYS = [LOST_KEY]

    with pytest.raises(Exception, match="no key in FIELD_ENCRYPTION_KEYS can decrypt") as failed:
        call_command("loaddata", str(tmp_path / "d.json"), verbosity=0)

    assert "load it with the keys of the database it was dumped from" in str(failed.value)
    assert find_secrets(str(failed.value)) == []
    assert not Destination.objects.exists()  # nothing half-restored, no empty key stored


def test_forms_still_get_no_key(destination):
    assert model_to_dict(destination)["routing_key"] == ""


def test_dumpdata_names_the_problem_when_a_key_is_unreadable(tmp_path, settings):
    current = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [LOST_KEY]
    make_destination("Orphaned", ROUTING_KEY)
    settings.FIELD_ENCRYPTION_KEYS = current

    with pytest.raises(CommandError, match="cannot be decrypted with any key"):
        dump(tmp_path / "d.json", "destinations")


def test_an_old_backup_with_empty_keys_is_a_check_error_and_never_sends(tmp_path, fake_pagerduty):
    # Dumps taken before keys were carried in them hold "routing_key": "" for every destination.
    call_command("loaddata", fixture(tmp_path / "old.json", routing_key=""), verbosity=0)
    with pytest.raises(SystemCheckError) as failed:
        call_command("check", databases=["default"])
    assert "destinations.E003" in str(failed.value)
    assert f"no routing key, so they cannot page: {NAME}" in str(failed.value)

    with pytest.raises(CommandError, match="Not sent: the destination has no routing key"):
        call_command("send_test_alert", NAME)

    delivery = queue_event(Destination.objects.get(), "k-1")
    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING  # kept, sent once the key is entered
    assert delivery.last_error == "Not sent: the destination has no routing key"
    assert fake_pagerduty.received == []  # nothing ever went out with routing_key ""

    destination = Destination.objects.get()
    destination.set_routing_key(ROUTING_KEY)
    destination.save()
    drain(at=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert [event["routing_key"] for event in fake_pagerduty.events] == [ROUTING_KEY]


def test_a_hand_written_fixture_with_a_plain_key_is_stored_encrypted(tmp_path):
    call_command("loaddata", fixture(tmp_path / "plain.json", routing_key=ROUTING_KEY), verbosity=0)
    destination = Destination.objects.get()
    assert destination.routing_key == ROUTING_KEY
    assert find_secrets(dump(tmp_path / "again.json", "destinations")) == []


def test_a_fixture_with_an_unknown_region_is_refused(tmp_path):
    path = fixture(tmp_path / "bad.json", routing_key=ROUTING_KEY, region="ap")
    with pytest.raises(IntegrityError):
        call_command("loaddata", path, verbosity=0)
    assert not Destination.objects.exists()


def test_no_write_can_store_an_unknown_region(destination):
    with pytest.raises(IntegrityError), transaction.atomic():
        Destination.objects.filter(pk=destination.pk).update(region="ap")
    assert Destination.objects.get().region == "us"
    assert not Delivery.objects.exists()


def _region_migration():
    """The migration that adds the region constraint, and the state just before it."""
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.db.migrations.operations import AddConstraint

    executor = MigrationExecutor(connection)
    for key, migration in executor.loader.graph.nodes.items():
        if any(
            isinstance(op, AddConstraint) and op.constraint.name == "destination_region_known"
            for op in migration.operations
        ):
            return executor, key, migration.dependencies
    raise AssertionError("no migration adds destination_region_known")


def test_migrating_a_database_that_holds_an_unknown_region_names_the_destination():
    from django.db import connection

    executor, key, before = _region_migration()
    executor.migrate(before)
    try:
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO destinations_destination (name, enabled, region, routing_key, "
                'severity_override, component, "group", event_class, custom_details, '
                "timeout_seconds, created_at, updated_at) VALUES "
                "('Tokyo on-call', true, 'ap', '', '', '', '', '', '{}', 30, "
                "CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            )
        executor.loader.build_graph()
        with pytest.raises(RuntimeError, match=r"Tokyo on-call \('ap'\)"):
            executor.migrate([key])
        with connection.cursor() as cursor:
            cursor.execute("SELECT region FROM destinations_destination")
            assert cursor.fetchall() == [("ap",)]  # nothing lost: the operator picks the region
            cursor.execute("DELETE FROM destinations_destination")
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
