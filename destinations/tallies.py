"""The counters behind GET /metrics, added to in the transaction that stores what they count.

Each counter is a row of a small tally table (destinations/models.py, detections/models.py), so
any number of web processes and workers on any number of hosts add to, and scrape, the same
figures; they survive restarts and the pruning of the delivery log, and need no directory
shared between processes (prometheus_client's multiprocess mode). Being written in the same
transaction as the delivery's status, the attempt or the run, a counter never disagrees with
what was stored: both are kept or both are rolled back.
"""

from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

from django.db import connection, models

from .models import (
    FINISHED,
    TEST_DEDUP_PREFIX,
    AttemptDurationTally,
    Delivery,
    DeliveryKind,
    DeliveryOutcomeTally,
    RateLimitedTally,
)

# The attempt-duration histogram's upper bounds, in seconds: PagerDuty answers in tens to
# hundreds of milliseconds, and a destination's timeout is at most 120 s.
ATTEMPT_DURATION_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
)
# The labels Prometheus gives them, the last one unbounded. prometheus_client writes a bound as
# Python's repr below a million (utils.floatToGoString; a test checks they agree): written here,
# so the worker, which stores these labels, does not import the Prometheus client at start.
BUCKET_LABELS = (*(repr(float(bound)) for bound in ATTEMPT_DURATION_BUCKETS), "+Inf")
# The same bounds in milliseconds (what an attempt stores), for bisect.
_BUCKET_BOUNDS_MS = [bound * 1000 for bound in ATTEMPT_DURATION_BUCKETS]
RATE_LIMITED_STATUS = 429
# A final status as the plain text stored in a tally row.
_OUTCOMES = {status: status.value for status in FINISHED}


def add_to_tallies(
    model: type[models.Model],
    counts: Mapping[tuple, Sequence[int]],
    *,
    key: Sequence[str],
    values: Sequence[str],
) -> None:
    """Add each key's counts to its row of a tally table (a missing row starts at zero).

    One statement for every row, however many: `INSERT … ON CONFLICT … DO UPDATE SET n = n +
    excluded.n`, which SQLite and PostgreSQL both run. Hand-written because the ORM's upsert
    (bulk_create with update_conflicts) can only overwrite a column, not add to it; the worker
    records hundreds of attempts a second, so one row read and written back each would cost it.
    Names come from _meta (quoted by the backend) and every value is a parameter.
    """
    if not counts:
        return
    quote = connection.ops.quote_name
    table = quote(model._meta.db_table)
    key_columns = [quote(model._meta.get_field(name).column) for name in key]
    value_columns = [quote(model._meta.get_field(name).column) for name in values]
    # Always the same order: two transactions adding to the same rows lock them in one order,
    # so they wait for each other instead of deadlocking.
    rows = sorted(counts.items())
    row = "(" + ", ".join(["%s"] * (len(key) + len(values))) + ")"
    additions = ", ".join(
        f"{column} = {table}.{column} + excluded.{column}" for column in value_columns
    )
    sql = (
        f"INSERT INTO {table} ({', '.join(key_columns + value_columns)}) "  # noqa: S608
        f"VALUES {', '.join([row] * len(rows))} "
        f"ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET {additions}"
    )
    params = [value for row_key, row_values in rows for value in (*row_key, *row_values)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def metrics_kind(delivery: Delivery) -> str:
    """The delivery's kind as the metrics count it: a test's resolve counts as a test.

    Pages and tests are counted apart (design §6): a test alert, or the resolve sent after it,
    never makes a destination look healthy or unhealthy.
    """
    if is_test(delivery):
        return DeliveryKind.TEST
    return delivery.kind


def is_test(delivery: Delivery) -> bool:
    """Whether the delivery is a test alert or the resolve of one (as destinations/health.py)."""
    return delivery.kind == DeliveryKind.TEST or delivery.dedup_key.startswith(TEST_DEDUP_PREFIX)


def count_finished(finished: Iterable[tuple[Delivery, str]]) -> None:
    """Count the deliveries that just reached a final status (each with that status).

    Call it in the transaction that stores the status. Every arrival counts: a delivery that
    failed, was re-queued by Retry now and was then delivered counts once failed and once
    delivered, as it was.
    """
    counts = Counter(
        (delivery.destination_id, metrics_kind(delivery), _OUTCOMES[status])
        for delivery, status in finished
        if status in _OUTCOMES
    )
    add_to_tallies(
        DeliveryOutcomeTally,
        {key: (count,) for key, count in counts.items()},
        key=("destination", "kind", "outcome"),
        values=("count",),
    )


def count_attempts(attempts: Iterable[tuple[Delivery, int | None, int]]) -> None:
    """Count stored attempts, each (delivery, HTTP status or None, duration in ms).

    Call it in the transaction that stores the attempts. Pages only: a test alert's attempt is
    one call from the admin, and neither its time nor its 429 says how the pages fare.
    """
    buckets: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    rate_limited: Counter = Counter()
    for delivery, status_code, duration_ms in attempts:
        if is_test(delivery):
            continue
        tally = buckets[(delivery.destination_id, bucket_label(duration_ms))]
        tally[0] += 1
        tally[1] += duration_ms
        if status_code == RATE_LIMITED_STATUS:
            rate_limited[(delivery.destination_id,)] += 1
    add_to_tallies(
        AttemptDurationTally, buckets, key=("destination", "le"), values=("count", "duration_ms")
    )
    add_to_tallies(
        RateLimitedTally,
        {key: (count,) for key, count in rate_limited.items()},
        key=("destination",),
        values=("count",),
    )


def bucket_label(duration_ms: int) -> str:
    """The label of the smallest bucket that holds an attempt of this duration."""
    return BUCKET_LABELS[bisect_left(_BUCKET_BOUNDS_MS, duration_ms)]
