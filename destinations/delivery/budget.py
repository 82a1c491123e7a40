"""Per-destination send budgets (token buckets) kept in the database and shared by all workers."""

import functools
import math
from datetime import datetime

from django.conf import settings

from ..models import RateBudget
from .compiled import STAND_IN_ID, CompiledQuery, update_each_row

# The destinations this process has seen a bucket for. A bucket is made once and lives as long
# as its destination, so asking the database to create it again on every claim (an INSERT … ON
# CONFLICT DO NOTHING, 0.3 ms of the claim's CPU: bench `throughput`) is spared; should one be
# missing all the same, that claim grants it nothing and the next creates it.
_seen_buckets: set[int] = set()


def _rate_per_second() -> float:
    # A bucket holding `burst` tokens and refilling at r per second lets through at most
    # burst + 60 r events in any 60 seconds; refilling at (limit - burst) / 60 keeps every
    # minute-long window within DELIVERY_RATE_PER_MINUTE, burst included.
    return max(settings.DELIVERY_RATE_PER_MINUTE - settings.DELIVERY_RATE_BURST, 1.0) / 60.0


def take_tokens(wanted: dict[int, int], *, now: datetime) -> dict[int, tuple[int, float]]:
    """Take up to `wanted[destination_id]` tokens from each bucket; call inside a transaction.

    Returns, per destination, how many were granted and, when fewer than wanted, the seconds
    until the next token. The rows are locked (FOR UPDATE) in id order so concurrent claimers
    queue behind each other instead of spending the same tokens twice, and never deadlock.
    """
    if not wanted:
        return {}
    burst = float(settings.DELIVERY_RATE_BURST)
    rate = _rate_per_second()
    ids = sorted(wanted)
    # A bucket is created full the first time a destination sends. Before any bucket is locked:
    # the insert may wait for another claimer's, which must not be waiting for ours.
    if not _seen_buckets.issuperset(ids):
        RateBudget.objects.bulk_create(
            [RateBudget(destination_id=i, tokens=burst, refilled_at=now) for i in ids],
            ignore_conflicts=True,
        )
    budgets = _locked_buckets(len(ids)).run(*ids)
    # A bucket gone since it was seen: nothing granted now, nothing to wait; the next pass of
    # the claim creates it again.
    granted: dict[int, tuple[int, float]] = {i: (0, 0.0) for i in ids}
    _seen_buckets.difference_update(ids)
    _seen_buckets.update(destination_id for destination_id, _, _ in budgets)
    changed = []
    for destination_id, stored_tokens, refilled_at in budgets:
        elapsed = max((now - refilled_at).total_seconds(), 0.0)
        tokens = min(burst, stored_tokens + elapsed * rate)
        take = min(wanted[destination_id], math.floor(tokens))
        tokens -= take
        wait = 0.0 if take == wanted[destination_id] else (1.0 - tokens) / rate
        granted[destination_id] = (take, max(wait, 0.0))
        changed.append((tokens, destination_id))
    _store(changed, refilled_at=now)
    return granted


@functools.cache
def _locked_buckets(count: int) -> CompiledQuery:
    """The buckets of `count` destinations, locked (FOR UPDATE) in id order; compiled once."""
    return CompiledQuery(
        lambda *ids: (
            RateBudget.objects.select_for_update()
            .filter(destination_id__in=ids)
            .order_by("pk")
            .values_list("destination_id", "tokens", "refilled_at")
        ),
        stand_ins=[STAND_IN_ID - n for n in range(count)],
        fields=[RateBudget._meta.get_field("destination")] * count,
    )


def _store(changed: list[tuple[float, int]], *, refilled_at: datetime) -> None:
    """Write the buckets' new token counts, all refilled at the same moment, in one statement.

    bulk_update() would build a CASE over every row, which costs the claim more than the
    database's work (update_each_row).
    """
    update_each_row(
        RateBudget,
        ("tokens", "refilled_at"),
        [(destination_id, tokens, refilled_at) for tokens, destination_id in changed],
    )
