"""API bearer tokens: created once in plaintext, stored as SHA-256, checked in constant time."""

import hashlib
import hmac
import re
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from .models import ApiToken, TokenScope

# A token reads dd_<prefix>_<secret>: the prefix finds the row and is not secret; the secret
# (256 random bits) is what the stored hash protects.
TOKEN_SCHEME = "dd"  # noqa: S105 (a fixed label, not a secret)
PREFIX_BYTES = 6
SECRET_BYTES = 32
# Prefixes are 48 random bits, so even one collision is rare; a few draws are plenty.
PREFIX_DRAWS = 5
_TOKEN = re.compile(
    rf"{TOKEN_SCHEME}_(?P<prefix>[0-9a-f]{{{PREFIX_BYTES * 2}}})_[A-Za-z0-9_-]{{20,200}}"
)
# last_used_at only needs minute precision; writing it on every request would make every
# authenticated request a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)
_NAME_MAX_LENGTH = ApiToken._meta.get_field("name").max_length


class TokenNameRefused(ValueError):
    """The token name is blank, too long or already taken, or its scope unknown."""


def hash_token(raw: str) -> str:
    """The SHA-256 hex digest that is stored in place of the token."""
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def create_api_token(*, name: str, scope: str = TokenScope.RUNS) -> str:
    """Store a new token of this scope under this name and return its plaintext, never kept."""
    if scope not in TokenScope.values:
        raise TokenNameRefused(f"The scope must be one of {', '.join(TokenScope.values)}.")
    name = name.strip()
    if not name:
        raise TokenNameRefused("A token needs a name, e.g. the engine that will use it.")
    if len(name) > _NAME_MAX_LENGTH:
        raise TokenNameRefused(f"The name must be at most {_NAME_MAX_LENGTH} characters.")
    for _ in range(PREFIX_DRAWS):
        prefix = secrets.token_hex(PREFIX_BYTES)
        raw = f"{TOKEN_SCHEME}_{prefix}_{secrets.token_urlsafe(SECRET_BYTES)}"
        try:
            with transaction.atomic():
                ApiToken.objects.create(
                    name=name, scope=scope, prefix=prefix, token_hash=hash_token(raw)
                )
        except IntegrityError:
            if ApiToken.objects.filter(name=name).exists():
                raise TokenNameRefused(f"A token named “{name}” exists already.") from None
            continue  # the random prefix collided with another token's; draw again
        return raw
    raise RuntimeError(f"No free token prefix after {PREFIX_DRAWS} draws; is the table writable?")


def authenticate_token(raw: str) -> ApiToken | None:
    """The token this plaintext belongs to (noting its use), or None when it is unknown."""
    match = _TOKEN.fullmatch(raw or "")
    if match is None:
        return None
    token = ApiToken.objects.filter(prefix=match["prefix"]).first()
    if token is None or not hmac.compare_digest(token.token_hash, hash_token(raw)):
        return None
    _note_use(token)
    return token


def _note_use(token: ApiToken) -> None:
    """Stamp last_used_at, at most once per LAST_USED_RESOLUTION per token."""
    now = timezone.now()
    stale = now - LAST_USED_RESOLUTION
    if token.last_used_at is not None and token.last_used_at > stale:
        return
    # The condition in the UPDATE keeps simultaneous requests from each writing the stamp.
    ApiToken.objects.filter(
        Q(last_used_at__isnull=True) | Q(last_used_at__lte=stale), pk=token.pk
    ).update(last_used_at=now)
    token.last_used_at = now
