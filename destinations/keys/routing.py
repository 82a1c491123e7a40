"""What a PagerDuty integration (routing) key looks like, how it may be shown, how it is read."""

import functools
import re
from functools import lru_cache

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

# Any run of this many consecutive characters of a key is masked, wherever it stands. The mask
# itself shows the last 4, so what a shorter leftover leaves unknown is still at least
# 32 - 11 - 4 = 17 characters (over 100 bits), and a run this long of a random 32-character
# key does not turn up in other text by chance (about 1 in 36**12 per position).
KEY_FRAGMENT_MIN = 12
# Between two characters of a spaced-out key: up to 3 of anything but a letter, a digit or a
# backslash (which opens an escape), or a JSON escape of such a character. Possessive, and never
# able to start what a key character starts, so the pattern cannot backtrack into it.
_SEPARATOR = (
    r"(?:[^A-Za-z0-9\\]|\\[nrt/]|\\u00(?:[01][0-9a-f]|2[0-9a-f]|3[a-f]|40|5[b-f]|60|7[b-f])){0,3}+"
)
# A key's pattern is large (each start of a run, each character in both cases and escaped), so it
# is compiled only once a text may hold the key, and kept: a proxy that echoes it does so often.
_PATTERNS_CACHED = 256
# For the cheap test that comes first: what separates or escapes characters, and what is left.
_SEPARATOR_ESCAPE = re.compile(r"\\[nrt/]")
_ANY_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_NOT_KEY_CHARACTER = re.compile(r"[^A-Za-z0-9]+")


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


def _key_character(char: str) -> str:
    """The pattern of one key character: itself in either case, or JSON-escaped (\\uXXXX)."""
    codes = sorted({f"{ord(variant):04x}" for variant in (char, char.swapcase())})
    escapes = "|".join(rf"\\u{code}" for code in codes)
    return rf"(?:{re.escape(char)}|{escapes})"


@lru_cache(maxsize=_PATTERNS_CACHED)
def routing_key_pattern(key: str) -> re.Pattern[str]:
    """A pattern for the key as an echo may distort it: any letter case, \\u-escaped characters,
    separators between characters, or only KEY_FRAGMENT_MIN consecutive characters of it."""
    units = [_key_character(char) for char in key]
    run = min(KEY_FRAGMENT_MIN, len(units))
    alternatives = []
    for start in range(len(units) - run + 1):
        required = _SEPARATOR.join(units[start : start + run])
        # The rest of the key, each next character optional only if the one before it matched.
        tail = ""
        for unit in reversed(units[start + run :]):
            tail = f"(?:{_SEPARATOR}{unit}{tail})?"
        alternatives.append(required + tail)
    # ASCII: case-insensitivity must not let "k" match the Kelvin sign, nor widen the separators.
    return re.compile("|".join(alternatives), re.IGNORECASE | re.ASCII)


def _may_hold(text: str, key: str) -> bool:
    """Whether the text may hold a form of the key: a cheap test, never wrong when it says no.

    It undoes escapes and drops every separator (more freely than the pattern does), then looks
    for any run of the key's characters that the pattern would mask.
    """
    unescaped = _ANY_ESCAPE.sub(lambda m: chr(int(m[1], 16)), _SEPARATOR_ESCAPE.sub("", text))
    # Lower-cased only once ASCII letters and digits are left: "K" (Kelvin) must not become "k".
    folded = _NOT_KEY_CHARACTER.sub("", unescaped).lower()
    key = key.lower()
    run = min(KEY_FRAGMENT_MIN, len(key))
    return any(key[start : start + run] in folded for start in range(len(key) - run + 1))


def scrub_routing_key(text: str, key: str) -> str:
    """Replace every form of the key in text (see routing_key_pattern) with its masked form."""
    if not key or not _may_hold(text, key):
        # An empty key would "match" between every character; there is nothing to hide then.
        return text
    return routing_key_pattern(key).sub(mask_routing_key(key), text)


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
