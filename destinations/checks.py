"""System checks: encryption keys present and valid; routing keys not older than the limit."""

from datetime import timedelta

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.db import DatabaseError
from django.utils import timezone

from .encryption import key_problems


@register()
def check_encryption_keys(app_configs=None, **kwargs):
    return [
        Error(problem, id="destinations.E001")
        for problem in key_problems(settings.FIELD_ENCRYPTION_KEYS)
    ]


@register()
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
