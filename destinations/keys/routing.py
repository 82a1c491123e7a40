"""What a PagerDuty integration (routing) key looks like, how it may be shown, how it is read."""

import functools
import re

from django.conf import settings
from django.core.exceptions import ValidationError

from ..pagerduty.events import ROUTING_KEY_LENGTH
from .encryption import DecryptionError, decrypt

MASK = "••••"
# Shown instead of a fingerprint when no configured encryption key can decrypt the stored key.
UNREADABLE_KEY = "⚠ unreadable — restore its encryption key or enter the key again"
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9]*")
# Decrypted routing keys kept in memory: enough for every destination in use.
ROUTING_KEYS_CACHED = 1024


def mask_routing_key(key: str | None) -> str:
    """The only form in which a key is ever shown: •••• and its last 4 characters."""
    if not key:
        return ""
    return MASK + key[-4:]


def clean_routing_key(value: str) -> str:
    """Strip surrounding whitespace and check the key as PagerDuty does (ValidationError if not)."""
    key = (value or "").strip()
    if not key:
        raise ValidationError("Enter the integration key.", code="required")
    if len(key) != ROUTING_KEY_LENGTH:
        raise ValidationError(
            "The integration key must be %(expected)d characters; this one has %(length)d.",
            code="length",
            params={"expected": ROUTING_KEY_LENGTH, "length": len(key)},
        )
    if not _KEY_CHARACTERS.fullmatch(key):
        bad = sum(1 for char in key if not (char.isascii() and char.isalnum()))
        raise ValidationError(
            "The integration key may contain only letters A–Z, a–z and digits 0–9; this one has "
            "%(bad)d other character(s). Copy it again from the service's Integrations tab.",
            code="characters",
            params={"bad": bad},
        )
    return key


def readable_key(token: str) -> str | None:
    """The routing key in a stored token, or None when no configured encryption key decrypts it."""
    try:
        return _decrypted(token, tuple(settings.FIELD_ENCRYPTION_KEYS))
    except DecryptionError:
        return None


@functools.lru_cache(maxsize=ROUTING_KEYS_CACHED)
def _decrypted(token: str, keys: tuple[str, ...]) -> str:
    """The routing key in a stored token, decrypted once per token and list of keys.

    A backlog holds many deliveries to each destination, and each decryption checks the token
    against every key in turn. A failure is not cached; the key list is part of the cache key,
    so a changed FIELD_ENCRYPTION_KEYS is obeyed at once.
    """
    return decrypt(token)
