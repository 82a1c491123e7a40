"""The encrypted routing key: round trip, key order and fallback, wrong key, raw column."""

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import FieldError
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection

from destinations.keys import encryption
from destinations.models import Destination
from tests.support.routing_keys import ROUTING_KEY

NEW_KEY = Fernet.generate_key().decode()
OLD_KEY = Fernet.generate_key().decode()
UNRELATED_KEY = Fernet.generate_key().decode()


def raw_column(destination: Destination) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT routing_key FROM {Destination._meta.db_table} WHERE id = %s",
            [destination.pk],
        )
        return cursor.fetchone()[0]


def test_routing_key_round_trips_and_the_column_holds_only_a_token(destination):
    stored = raw_column(destination)
    assert ROUTING_KEY not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token (version byte 0x80, base64)
    assert Destination.objects.get(pk=destination.pk).routing_key == ROUTING_KEY


def test_first_key_encrypts_and_every_key_decrypts(db, settings):
    settings.FIELD_ENCRYPTION_KEYS = [OLD_KEY]
    dest = Destination(name="old")
    dest.set_routing_key(ROUTING_KEY)
    dest.save()
    token_under_old = raw_column(dest)

    settings.FIELD_ENCRYPTION_KEYS = [NEW_KEY, OLD_KEY]
    assert Destination.objects.get(pk=dest.pk).routing_key == ROUTING_KEY
    assert not encryption.is_under_first_key(token_under_old)

    dest.save()  # any write re-encrypts under the first key
    assert encryption.is_under_first_key(raw_column(dest))
    assert Fernet(NEW_KEY).decrypt(raw_column(dest).encode()).decode() == ROUTING_KEY


def test_a_wrong_key_is_an_error_never_the_ciphertext(destination, settings):
    settings.FIELD_ENCRYPTION_KEYS = [UNRELATED_KEY]
    with pytest.raises(encryption.DecryptionError) as caught:
        Destination.objects.get(pk=destination.pk)
    message = str(caught.value)
    assert "FIELD_ENCRYPTION_KEYS" in message
    assert raw_column(destination) not in message
    assert ROUTING_KEY not in message


def test_lookups_on_the_encrypted_column_are_refused(destination):
    with pytest.raises(FieldError, match="encrypted"):
        list(Destination.objects.filter(routing_key=ROUTING_KEY))
    with pytest.raises(FieldError, match="encrypted"):
        list(Destination.objects.filter(routing_key__startswith="Rk7"))


@pytest.mark.parametrize(
    ("keys", "expected"),
    [
        ([], "FIELD_ENCRYPTION_KEYS is not set"),
        (["not-a-key"], "key 1 of 1 is not a valid Fernet key"),
        ([NEW_KEY, "s3cr3t-but-not-fernet"], "key 2 of 2 is not a valid Fernet key"),
    ],
)
def test_missing_or_malformed_keys_are_a_system_check_error(db, settings, keys, expected):
    settings.FIELD_ENCRYPTION_KEYS = keys
    with pytest.raises(SystemCheckError) as caught:
        call_command("check")
    message = str(caught.value)
    assert "destinations.E001" in message
    assert expected in message
    assert "Fernet.generate_key()" in message  # says how to make one
    assert "s3cr3t" not in message  # the bad value is not echoed


def test_valid_keys_pass_the_check(db, capsys):
    call_command("check")
    assert "System check identified no issues" in capsys.readouterr().out
