"""What a PagerDuty integration (routing) key looks like, and how it may be shown."""

import re

from django.core.exceptions import ValidationError

from ..pagerduty.events import ROUTING_KEY_LENGTH

MASK = "••••"
# Shown instead of a fingerprint when no configured encryption key can decrypt the stored key.
UNREADABLE_KEY = "⚠ unreadable — restore its encryption key or enter the key again"
_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9]*")


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
