"""Secrets in the environment or `.env` are read exactly as written, and never shown."""

import re
import runpy
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from destinations.checks import check_encryption_keys
from project import envfile

SETTINGS_FILE = Path(__file__).resolve().parents[2] / "project" / "settings.py"
# Two values starting with `$`, which django-environ would take for another variable's name.
DOLLAR_KEY = "$7hfay&1oe^ay1w-d!78h#k6ek-wr3m9xko7-qaf9i$#o)&w3x"
DOLLAR_TOKEN = "$metrics-token-with-a-dollar-first"


def test_a_secret_key_and_a_metrics_token_starting_with_a_dollar_are_read_as_written(
    monkeypatch,
):
    monkeypatch.setenv("SECRET_KEY", DOLLAR_KEY)
    monkeypatch.setenv("METRICS_TOKEN", DOLLAR_TOKEN)

    values = runpy.run_path(str(SETTINGS_FILE))

    assert values["SECRET_KEY"] == DOLLAR_KEY
    assert values["METRICS_TOKEN"] == DOLLAR_TOKEN


def test_encryption_keys_are_read_as_written_and_a_bad_one_is_left_to_the_check(monkeypatch):
    good = Fernet.generate_key().decode()
    monkeypatch.setenv("FIELD_ENCRYPTION_KEYS", f"$not-a-fernet-key,{good}")

    values = runpy.run_path(str(SETTINGS_FILE))

    assert values["FIELD_ENCRYPTION_KEYS"] == ["$not-a-fernet-key", good]
    with override_settings(FIELD_ENCRYPTION_KEYS=values["FIELD_ENCRYPTION_KEYS"]):
        [error] = check_encryption_keys(None)
    assert error.id == "destinations.E001"
    assert "$not-a-fernet-key" not in error.msg + str(error.hint)


def test_a_missing_secret_key_is_named_and_nothing_else_is_shown(monkeypatch):
    monkeypatch.delenv("SECRET_KEY")
    monkeypatch.setenv("METRICS_TOKEN", DOLLAR_TOKEN)

    with pytest.raises(ImproperlyConfigured) as error:
        runpy.run_path(str(SETTINGS_FILE))

    assert str(error.value) == "Set the SECRET_KEY environment variable"


def test_generated_secret_keys_hold_only_characters_no_reader_treats_specially():
    keys = [envfile.new_secret_key() for _ in range(200)]

    for key in keys:
        assert re.fullmatch(r"[A-Za-z0-9_-]{64}", key), key
        assert len(set(key)) >= 5  # what Django's deploy check asks of a key, with its length
    assert len(set(keys)) == len(keys)
