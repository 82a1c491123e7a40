"""Fill a PostgreSQL benchmark database with a year of delivery history, in bulk SQL.

The ORM would take hours for ten million rows; `INSERT … SELECT generate_series` writes them in
minutes. Every delivery has its detection run and one attempt, as the worker leaves them. The
destinations and detections themselves are made through the ORM first (bench/scale_pages.py
`setup`), so their keys are encrypted as the product stores them, and each detection's real event
(built by the product's own builder) is what its deliveries carry.
"""

# Every statement here is put together from this module's own constants and table names.
# ruff: noqa: S608

from __future__ import annotations

import json

import psycopg

# Of every 100 finished deliveries in the history, this many failed (PagerDuty's 400); the rest
# were delivered. bench/seed.py's history uses the same share.
FAILED_PER_100 = 3
# And one in 100 is a test alert from the admin (no run; the run of that number did not match).
TEST_AT = 50
# An answer as PagerDuty gives it, kept on the attempt as the worker keeps it.
ACCEPTED_EXCERPT = '{"status":"success","message":"Event processed","dedup_key":"%s"}'
REFUSED_EXCERPT = '{"status":"invalid event","message":"Event object is invalid","errors":[]}'


def load_events(connection: psycopg.Connection, events: list[dict]) -> None:
    """Keep each detection's event and destination in a table the inserts below read."""
    connection.execute(
        "CREATE TABLE IF NOT EXISTS bench_scale_event ("
        " n integer PRIMARY KEY, destination_id bigint NOT NULL, detection_id uuid NOT NULL,"
        " event jsonb NOT NULL, dedup_key text NOT NULL)"
    )
    with connection.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO bench_scale_event VALUES (%s, %s, %s, %s, %s)",
            [
                (
                    n,
                    e["destination_id"],
                    e["detection_id"],
                    json.dumps(e["event"]),
                    e["event"]["dedup_key"],
                )
                for n, e in enumerate(events)
            ],
        )


# One statement per table; %(first)s..%(last)s number the rows (run, delivery and attempt n share
# the id n), spread evenly from %(newest)s back to %(oldest)s seconds before %(now)s. Every
# delivery is a trigger of its detection's event, but one in 100, a test alert. Which ones fail
# or are tests goes by a hash of n, so that no destination or detection gets more than its share.
# With %(failing_event)s set, every row is that one event and failed (a destination whose key
# was revoked, PagerDuty refusing each page).
_TIMES = """
    SELECT g,
           %(now)s::timestamptz - make_interval(secs => %(newest)s::float8
               + (%(oldest)s::float8 - %(newest)s::float8)
                 * (g - %(first)s)::float8 / greatest(%(last)s - %(first)s, 1)) AS t,
           e.*,
           %(failing_event)s::integer IS NOT NULL
               OR abs(hashint8(g)) %% 100 < %(failed_per_100)s AS failed,
           %(failing_event)s::integer IS NULL AND abs(hashint8(g)) %% 100 = %(test_at)s AS test
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
    JOIN bench_scale_event AS e ON e.n = coalesce(%(failing_event)s::integer, g %% %(events)s)
"""

INSERT_RUNS = f"""
INSERT INTO detections_detectionrun (
    id, run_id, run_type, outcome, match_count, ran_at, range_start, range_end,
    match_exhaustiveness, search_id, trace_id, errors, errors_total, replay_link, recorded_at,
    detection_id)
SELECT g, 'scale-run-' || g, 'SCHEDULED', CASE WHEN test THEN 'NOT_MATCHED' ELSE 'MATCHED' END,
       CASE WHEN test THEN 0 ELSE 42 END, t, t - interval '5 minutes', t,
       'COMPLETED', 'search-' || g, md5(g::text), '[]', 0, '', t, detection_id
FROM ({_TIMES}) AS rows
"""

INSERT_DELIVERIES = f"""
INSERT INTO destinations_delivery (
    id, destination_id, run_id, kind, event, dedup_key, status, attempts, total_attempts,
    queued_at, next_attempt_at, last_status_code, pagerduty_message, pagerduty_errors,
    pagerduty_dedup_key, last_error, created_at, delivered_at, finished_at, resolve_after)
SELECT g, destination_id, CASE WHEN test THEN NULL ELSE g END,
       CASE WHEN test THEN 'test' ELSE 'trigger' END, event,
       CASE WHEN test THEN 'test-' || md5(g::text) ELSE dedup_key END,
       CASE WHEN failed THEN 'failed' ELSE 'delivered' END, 1, 1, t, t,
       CASE WHEN failed THEN 400 ELSE 202 END,
       CASE WHEN failed THEN '' ELSE 'Event processed' END, '[]',
       CASE WHEN failed THEN '' ELSE dedup_key END,
       CASE WHEN failed THEN 'Event object is invalid' ELSE '' END,
       t, CASE WHEN failed THEN NULL ELSE t + interval '90 milliseconds' END,
       t + interval '90 milliseconds', false
FROM ({_TIMES}) AS rows
"""

INSERT_ATTEMPTS = f"""
INSERT INTO destinations_deliveryattempt (
    id, delivery_id, number, started_at, duration_ms, status_code, result, response_excerpt,
    error)
SELECT g, g, 1, t, 40 + g %% 120, CASE WHEN failed THEN 400 ELSE 202 END,
       CASE WHEN failed THEN 'failed' ELSE 'delivered' END,
       CASE WHEN failed THEN %(refused)s ELSE format(%(accepted)s, dedup_key) END,
       CASE WHEN failed THEN 'Event object is invalid' ELSE '' END
FROM ({_TIMES}) AS rows
"""

# Deliveries waiting for the worker: queued moments ago, due now, no attempt yet.
INSERT_PENDING = """
INSERT INTO destinations_delivery (
    id, destination_id, run_id, kind, event, dedup_key, status, attempts, total_attempts,
    queued_at, next_attempt_at, pagerduty_message, pagerduty_errors, pagerduty_dedup_key,
    last_error, created_at, resolve_after)
SELECT g, e.destination_id, g, 'trigger', e.event, e.dedup_key, 'pending', 0, 0,
       %(now)s::timestamptz - make_interval(secs => g - %(first)s + 1),
       %(now)s::timestamptz - make_interval(secs => g - %(first)s + 1),
       '', '[]', '', '', %(now)s::timestamptz - make_interval(secs => g - %(first)s + 1), false
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
JOIN bench_scale_event AS e ON e.n = g %% %(events)s
"""

INSERT_PENDING_RUNS = """
INSERT INTO detections_detectionrun (
    id, run_id, run_type, outcome, match_count, ran_at, range_start, range_end,
    match_exhaustiveness, search_id, trace_id, errors, errors_total, replay_link, recorded_at,
    detection_id)
SELECT g, 'scale-run-' || g, 'SCHEDULED', 'MATCHED', 42, %(now)s, %(now)s, %(now)s,
       'COMPLETED', 'search-' || g, md5(g::text), '[]', 0, '', %(now)s, e.detection_id
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
JOIN bench_scale_event AS e ON e.n = g %% %(events)s
"""

# Every destination of a live store has sent, so each has its send budget (a token bucket); the
# claim takes tokens from it rather than creating it. Last refilled an hour ago, empty: a bucket
# refills up to its burst (destinations/delivery/budget.py), so each is full now, whatever the
# burst and rate settings, without this file repeating them.
INSERT_BUDGETS = """
INSERT INTO destinations_ratebudget (destination_id, tokens, refilled_at)
SELECT DISTINCT destination_id, 0, %(now)s::timestamptz - interval '1 hour'
FROM bench_scale_event
"""

TABLES = ("detections_detectionrun", "destinations_delivery", "destinations_deliveryattempt")


def events_count(connection: psycopg.Connection) -> int:
    return connection.execute("SELECT count(*) FROM bench_scale_event").fetchone()[0]


def insert_history(
    connection: psycopg.Connection,
    *,
    first: int,
    count: int,
    now,
    newest_s: float,
    oldest_s: float,
    failing_event: int | None = None,
) -> None:
    """`count` finished deliveries (ids first…), each with its run and attempt, over a span.

    With `failing_event` (a bench_scale_event number), all of them are that event and failed.
    """
    if count <= 0:
        return
    params = {
        "first": first,
        "last": first + count - 1,
        "now": now,
        "newest": newest_s,
        "oldest": oldest_s,
        "events": events_count(connection),
        "failed_per_100": FAILED_PER_100,
        "test_at": TEST_AT,
        "accepted": ACCEPTED_EXCERPT,
        "refused": REFUSED_EXCERPT,
        "failing_event": failing_event,
    }
    for statement in (INSERT_RUNS, INSERT_DELIVERIES, INSERT_ATTEMPTS):
        connection.execute(statement, params)


def insert_pending(connection: psycopg.Connection, *, first: int, count: int, now) -> None:
    """`count` deliveries due now (ids first…), each with its run."""
    params = {
        "first": first,
        "last": first + count - 1,
        "now": now,
        "events": events_count(connection),
    }
    connection.execute(INSERT_PENDING_RUNS, params)
    connection.execute(INSERT_PENDING, params)


def first_event_of_first_destination(connection: psycopg.Connection) -> int:
    """The number of the first event paging the destination with the lowest id."""
    return connection.execute(
        "SELECT min(n) FROM bench_scale_event WHERE destination_id ="
        " (SELECT min(destination_id) FROM bench_scale_event)"
    ).fetchone()[0]


def insert_budgets(connection: psycopg.Connection, *, now) -> None:
    """A full send budget for every destination, as each has after its first page."""
    connection.execute(INSERT_BUDGETS, {"now": now})


def finish_load(connection: psycopg.Connection) -> None:
    """Move each table's id sequence past the rows written; vacuum and analyse as a live store."""
    for table in TABLES:
        connection.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
            f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
        )
    # VACUUM as autovacuum would have by then (PostgreSQL 13+ vacuums after many inserts): it
    # marks the pages all-visible, which lets a count read an index alone.
    for table in TABLES:
        connection.execute(f"VACUUM (ANALYZE) {table}")


def without_secondary_indexes(connection: psycopg.Connection, load) -> dict:
    """Run `load()` with the tables' secondary indexes and foreign keys dropped, then rebuild.

    Building an index once over millions of rows (a sort) is several times faster than updating
    it row by row, and a deferred foreign key queues one check per inserted row. The definitions
    are read back from the catalogue, so they are exactly what the migrations made. Returns the
    seconds each phase took.
    """
    import time

    tables = list(TABLES)
    indexes = connection.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = ANY(%s)"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
        [tables],
    ).fetchall()
    foreign_keys = connection.execute(
        "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE contype = 'f' AND conrelid::regclass::text = ANY(%s)",
        [tables],
    ).fetchall()
    for table, name, _ in foreign_keys:
        connection.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for name, _ in indexes:
        connection.execute(f'DROP INDEX "{name}"')
    started = time.perf_counter()
    load()
    loaded = time.perf_counter()
    connection.execute("SET maintenance_work_mem = '256MB'")
    for _, definition in indexes:
        connection.execute(definition)
    indexed = time.perf_counter()
    for table, name, definition in foreign_keys:
        connection.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    finish_load(connection)
    return {
        "insert_s": round(loaded - started, 1),
        "indexes_s": round(indexed - loaded, 1),
        "constraints_and_analyze_s": round(time.perf_counter() - indexed, 1),
    }
