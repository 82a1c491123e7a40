"""Flat costs: the admin's pages, /healthz, /metrics and the claim at 10 thousand and millions.

One PostgreSQL database is filled with the small store's history (9,000 deliveries); a copy is grown
with more to the large size; each gets the same last 24 hours; then every item is timed on both,
the two taking turns request by request so that both meet the same load from the rest of the
machine. The model (also in the README):

- 20 destinations and 40 detections (detection i pages destination i mod 20); every delivery
  has its detection run and one attempt, as the worker leaves them; 3 in 100 failed, 1 in 100 is
  a test alert, the rest were delivered;
- the last 24 hours are the same at both sizes, so the figures a page shows of "now" do not
  change: RECENT deliveries with the newest ids (as a live store's newest rows have them), of
  which PENDING are due now, waiting for the worker, and FAILING are the failures of one
  destination whose routing key was revoked half a day ago (the first destination, the one the
  items of a destination look at, so its failures fill a page of the list at both sizes, where
  its share of the history's 3 in 100 would give the small store 15 rows and the large a page);
- every destination has its send budget (a full token bucket), as each has after its first
  page, so the claim takes tokens rather than creating buckets its rolled-back transaction drops;
- the rest is history, spread evenly over the year before that: 9,000 rows small, the large
  size less 1,000 large. A store grows by its history, not by today's traffic.

LARGE is 10 million by the design (§12); `make bench` loads LARGE_DEFAULT instead, the most this
2-core machine loads while the whole `make bench` stays under 10 minutes (README, *Scale*).
BENCH_SCALE_DELIVERIES sets it, e.g. 10000000 for the full size (25 minutes and 27 GB here).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from . import postgres, scale_fill
from .sites import PYTHON, Site, stop

DESTINATIONS = 20
DETECTIONS = 40
SMALL = 10_000
LARGE = 10_000_000
LARGE_DEFAULT = 1_000_000
RECENT = 1_000
PENDING = 20
# Of the last 24 hours, the failures of one destination whose key was revoked half a day ago.
FAILING = 150
FAILING_SINCE_S = 12 * 3600
DAY = 86_400
YEAR = 365 * DAY
REQUESTS = 7
# The check of every figure: the large store's median within this many times the small one's.
MAX_RATIO = 1.5
# Nothing is sent: the events URL only has to be set.
UNUSED_EVENTS_URL = "http://127.0.0.1:9/v2/enqueue"
# What is timed, in the order of the table (bench/scale_pages.py names the paths).
ITEMS = (
    "index",
    "destinations",
    "destination",
    "detections",
    "detection",
    "runs",
    "runs_matched",
    "runs_error",
    "runs_manual",
    "runs_detection",
    "run",
    "deliveries",
    "deliveries_failed",
    "deliveries_pending",
    "deliveries_test",
    "deliveries_trigger",
    "deliveries_destination",
    "deliveries_day",
    "deliveries_failed_destination",
    "deliveries_page_2",
    "delivery",
    "health",
    "healthz",
    "metrics",
    "claim",
)


def large_size() -> int:
    """The large store's deliveries: BENCH_SCALE_DELIVERIES, or LARGE_DEFAULT."""
    size = int(os.environ.get("BENCH_SCALE_DELIVERIES") or LARGE_DEFAULT)
    if size <= SMALL:
        raise ValueError(f"BENCH_SCALE_DELIVERIES must be over {SMALL:,}, not {size:,}")
    return size


def measure(workdir: Path, *, log=print) -> dict:
    """Each item's median at both sizes and their ratio, or why it was not run."""
    url = postgres.server_url()
    if why := postgres.skip_reason(url):
        return {"skipped": why}
    large = large_size()
    with postgres.databases(url) as create:
        small_name = create("small")
        site = Site.create(
            workdir / "scale",
            events_url=UNUSED_EVENTS_URL,
            database_url=postgres.with_database(url, small_name),
        )
        site.manage("migrate", "--noinput", "-v", "0")
        site.manage("collectstatic", "--noinput", "-v", "0")  # the pages name hashed files
        made = site.bench_step(
            "scale_pages",
            "setup",
            "--destinations",
            str(DESTINATIONS),
            "--detections",
            str(DETECTIONS),
        )
        now = datetime.now(UTC)
        with postgres.connect(postgres.with_database(url, small_name)) as connection:
            scale_fill.load_events(connection, made["events"])
            fill_history(connection, now=now)
        # The large store is the small one's history grown: a copy, then the extra rows. Each
        # store's last 24 hours come after its history, with the newest ids (the history then
        # appends to the primary key's index, PostgreSQL's fast path, not below its last key).
        large_name = create("large", template=small_name)
        with postgres.connect(postgres.with_database(url, small_name)) as connection:
            add_last_day(connection, first=SMALL - RECENT + 1, now=now)
            scale_fill.finish_load(connection)
        # A live store's past days are rolled up by the worker's daily housekeeping, which the
        # health page reads instead of their rows: done here as it would have been. The small
        # store's, once copied, while the large one loads (mostly the database's one core).
        rolling = site.spawn(PYTHON, "-m", "bench.scale_pages", "rollup", small_name)
        started = time.perf_counter()
        try:
            with postgres.connect(postgres.with_database(url, large_name)) as connection:
                phases = scale_fill.without_secondary_indexes(
                    connection, lambda: grow(connection, to=large, now=now)
                )
                size = connection.execute("SELECT pg_database_size(current_database())").fetchone()
        except BaseException:
            stop(rolling)
            raise
        load_s = time.perf_counter() - started
        log(f"  {large:,} deliveries stored in {load_s:.0f} s ({phases})")
        rolled = _last_json(site.finish(rolling, timeout=900))
        rolled |= site.bench_step("scale_pages", "rollup", large_name, timeout=900)
        log(f"  past days rolled up in {rolled[small_name]} s and {rolled[large_name]} s")
        timed = site.bench_step(
            "scale_pages",
            "time",
            "--requests",
            str(REQUESTS),
            small_name,
            large_name,
            timeout=900,
        )
        small, timed = timed[small_name], timed[large_name]
    results = compare(small, timed)
    results["setup"] = {
        "small": SMALL,
        "large": large,
        "design_large": LARGE,
        "destinations": DESTINATIONS,
        "detections": DETECTIONS,
        "last_24h": RECENT,
        "pending": PENDING,
        "failing_today": FAILING,
        "requests": REQUESTS,
        "load_s": round(load_s, 1),
        "load_phases": phases,
        "database_mb_large": round(size[0] / 2**20),
    }
    return results


def _last_json(finished) -> dict:
    """The JSON line a bench step printed last, or its failure raised with its output."""
    if finished.returncode != 0:
        raise RuntimeError(f"a bench step exited {finished.returncode}:\n{finished.stderr[-4000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def fill_history(connection: psycopg.Connection, *, now) -> None:
    """The small store's history: 9,000 rows over the year before the last 24 hours."""
    scale_fill.insert_history(
        connection, first=1, count=SMALL - RECENT, now=now, newest_s=DAY, oldest_s=YEAR
    )


def grow(connection: psycopg.Connection, *, to: int, now) -> None:
    """More history over the same year, then the last 24 hours: `to` deliveries in all."""
    scale_fill.insert_history(
        connection, first=SMALL - RECENT + 1, count=to - SMALL, now=now, newest_s=DAY, oldest_s=YEAR
    )
    add_last_day(connection, first=to - RECENT + 1, now=now)


def add_last_day(connection: psycopg.Connection, *, first: int, now) -> None:
    """The last 24 hours, ids first… (after the history's): the same rows in either store.

    One destination's FAILING failures since its key was revoked, other deliveries, and
    PENDING due now, with the newest ids; and every destination's send budget, full.
    """
    others = RECENT - PENDING - FAILING
    scale_fill.insert_history(
        connection, first=first, count=others, now=now, newest_s=60, oldest_s=DAY
    )
    first += others
    scale_fill.insert_history(
        connection,
        first=first,
        count=FAILING,
        now=now,
        newest_s=60,
        oldest_s=FAILING_SINCE_S,
        failing_event=scale_fill.first_event_of_first_destination(connection),
    )
    scale_fill.insert_pending(connection, first=first + FAILING, count=PENDING, now=now)
    scale_fill.insert_budgets(connection, now=now)


def compare(small: dict, large: dict) -> dict:
    """Per item: both medians, both query counts, and the ratio checked against MAX_RATIO."""
    results: dict = {}
    for item in ITEMS:
        before, after = small.get(item, {}), large.get(item, {})
        if item == "metrics" and 404 in (before.get("status"), after.get("status")):
            results[item] = {"note": "not present (GET /metrics answered 404)"}
            continue
        if before.get("status") != 200 or after.get("status") != 200:
            error = after.get("error") or before.get("error") or "no answer"
            results[item] = {"note": f"not measured: {error}"}
            continue
        results[item] = {
            "small_ms": before["p50_ms"],
            "large_ms": after["p50_ms"],
            "ratio": round(after["p50_ms"] / before["p50_ms"], 2) if before["p50_ms"] else None,
            "queries_small": before.get("queries"),
            "queries_large": after.get("queries"),
        }
    return results
