"""Fernet encryption of secrets at rest, with keys from FIELD_ENCRYPTION_KEYS (newest first)."""

import base64
import binascii
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

SETTING = "FIELD_ENCRYPTION_KEYS"
# A Fernet token is a version byte (0x80), a timestamp (8), an IV (16), at least one cipher block
# (16) and an HMAC (32): never as short as a secret such as a 32-character routing key.
_TOKEN_VERSION = 0x80
_TOKEN_MIN_BYTES = 1 + 8 + 16 + 16 + 32
HOW_TO_GENERATE = (
    'generate one with: python -c "from cryptography.fernet import Fernet; '
    'print(Fernet.generate_key().decode())"'
)


class EncryptionKeyError(ImproperlyConfigured):
    """FIELD_ENCRYPTION_KEYS is missing or holds a value that is not a Fernet key."""


class DecryptionError(ValueError):
    """A stored value cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or f"A stored secret cannot be decrypted with any key in {SETTING}: the key that "
            f"encrypted it is missing from the list (add it back after the first key)."
        )


def key_problems(keys: list[str] | tuple[str, ...]) -> list[str]:
    """Describe what is wrong with a list of keys, without echoing them."""
    if not keys:
        return [f"{SETTING} is not set; {HOW_TO_GENERATE}"]
    problems = []
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key.strip())
        except (ValueError, TypeError):
            problems.append(
                f"{SETTING}: key {position} of {len(keys)} is not a valid Fernet key "
                f"(32 url-safe base64-encoded bytes); {HOW_TO_GENERATE}"
            )
    return problems


@lru_cache(maxsize=4)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    problems = key_problems(keys)
    if problems:
        raise EncryptionKeyError(problems[0])
    return MultiFernet([Fernet(key.strip()) for key in keys])


def fernet() -> MultiFernet:
    """The MultiFernet for the configured keys: the first encrypts, all decrypt."""
    return _multi_fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    """Encrypt text under the first key; the result is a Fernet token."""
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a Fernet token with any configured key, or raise DecryptionError."""
    return _with_any_key(fernet().decrypt, token)


def looks_like_token(value: str) -> bool:
    """Whether a value has the shape of a Fernet token (its authenticity is not checked)."""
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
    except (ValueError, binascii.Error):  # not ASCII, or not base64
        return False
    return len(raw) >= _TOKEN_MIN_BYTES and raw[0] == _TOKEN_VERSION


def rotate(token: str) -> str:
    """Re-encrypt a token under the first key, or raise DecryptionError."""
    return _with_any_key(fernet().rotate, token)


def _with_any_key(operation, token: str) -> str:
    """Run a MultiFernet operation on a token; no configured key opening it is DecryptionError."""
    try:
        return operation(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError() from None


def is_under_first_key(token: str) -> bool:
    """Whether the token was encrypted with the first (current) key."""
    first = Fernet(settings.FIELD_ENCRYPTION_KEYS[0].strip())
    try:
        first.decrypt(token.encode())
    except InvalidToken:
        return False
    return True
