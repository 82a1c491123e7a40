"""When to try a delivery again, and when to give up (design §6)."""

import random
from datetime import datetime, timedelta

from django.conf import settings


def backoff_seconds(attempts: int, *, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half the step fixed, half random, capped."""
    step = min(
        settings.DELIVERY_BACKOFF_MAX_SECONDS,
        settings.DELIVERY_BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0),
    )
    return step / 2 + (rng or random).uniform(0, step / 2)


def retry_delay_seconds(
    attempts: int, *, retry_after: float | None, rng: random.Random | None = None
) -> float:
    """PagerDuty's Retry-After when it gave one (capped, never later), else the backoff."""
    if retry_after is not None:
        return min(max(retry_after, 0.0), settings.DELIVERY_RETRY_AFTER_MAX_SECONDS)
    return backoff_seconds(attempts, rng=rng)


def give_up_reason(*, attempts: int, queued_at: datetime, now: datetime) -> str | None:
    """Why a retryable failure should now be final, or None to try again."""
    if attempts >= settings.DELIVERY_MAX_ATTEMPTS:
        return f"gave up after {attempts} attempts (DELIVERY_MAX_ATTEMPTS)"
    age = now - queued_at
    if age >= timedelta(seconds=settings.DELIVERY_MAX_AGE_SECONDS):
        return (
            f"gave up after {attempts} attempts over {int(age.total_seconds())} s "
            f"(DELIVERY_MAX_AGE_SECONDS)"
        )
    return None
