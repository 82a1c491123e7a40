"""System checks: encryption keys valid; routing keys present, readable, not too old; admin MFA."""

from datetime import timedelta

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.db import DatabaseError
from django.db.models import TextField
from django.db.models.functions import Cast
from django.utils import timezone

from .keys.encryption import key_problems
from .keys.routing import readable_key

# Its own tag, so a command can ask for it alone (the worker does, see deliver_alerts).
ENCRYPTION_TAG = "encryption"


@register(ENCRYPTION_TAG)
def check_encryption_keys(app_configs=None, **kwargs):
    return [
        Error(problem, id="destinations.E001")
        for problem in key_problems(settings.FIELD_ENCRYPTION_KEYS)
    ]


# Tagged database: they query, so they run only where asked (manage.py check --database default,
# and migrate), not before every command.
@register(Tags.database)
def check_routing_keys_readable(app_configs=None, **kwargs):
    from .models import Destination

    if key_problems(settings.FIELD_ENCRYPTION_KEYS):
        return []  # E001 already says what is wrong
    try:
        tokens = list(
            Destination.objects.annotate(token=Cast("routing_key", TextField()))
            .order_by("name")
            .values_list("name", "token")
        )
    except DatabaseError:
        return []
    unreadable, empty = [], []
    for name, token in tokens:
        key = readable_key(token) if token is not None else ""
        if key is None:
            unreadable.append(name)
        elif not key.strip():
            empty.append(name)
    problems = []
    if unreadable:
        problems.append(
            Error(
                f"{len(unreadable)} destination(s) have routing keys that no key in "
                f"FIELD_ENCRYPTION_KEYS can decrypt, so they cannot page: {', '.join(unreadable)}.",
                hint="Add the encryption key that stored them back to FIELD_ENCRYPTION_KEYS "
                "(after the first key), or enter their routing keys again in the admin.",
                id="destinations.E002",
            )
        )
    if empty:
        problems.append(
            Error(
                f"{len(empty)} destination(s) have no routing key, so they cannot page: "
                f"{', '.join(empty)}.",
                # A dump taken before dumpdata carried keys restores every key empty.
                hint="Enter their routing keys in the admin, or run: python manage.py "
                "rotate_routing_key DESTINATION",
                id="destinations.E003",
            )
        )
    return problems


@register(Tags.database)
def check_routing_key_age(app_configs=None, **kwargs):
    from .models import Destination

    limit = settings.ROUTING_KEY_MAX_AGE_DAYS
    cutoff = timezone.now() - timedelta(days=limit)
    try:
        stale = list(
            Destination.objects.filter(routing_key_rotated_at__lt=cutoff)
            .order_by("routing_key_rotated_at")
            .values_list("name", flat=True)
        )
    except DatabaseError:
        # Not migrated yet (or unreachable): other checks and commands report that.
        return []
    if not stale:
        return []
    return [
        Warning(
            f"{len(stale)} destination(s) have routing keys older than {limit} days: "
            f"{', '.join(stale)}.",
            hint="Regenerate the key in PagerDuty and run: python manage.py rotate_routing_key "
            "DESTINATION",
            id="destinations.W001",
        )
    ]


@register(Tags.security, deploy=True)
def check_admin_mfa_required(app_configs=None, **kwargs):
    if settings.ADMIN_MFA_REQUIRED:
        return []
    return [
        Warning(
            "ADMIN_MFA_REQUIRED is off: a stolen admin password alone opens the admin, which "
            "holds every routing key.",
            hint="Set ADMIN_MFA_REQUIRED=True; staff then set up an authenticator app at their "
            "next sign-in (README: Signing in).",
            id="project.W010",
        )
    ]
