"""prune_deliveries on PostgreSQL over 1,000,000 old deliveries, while a worker keeps delivering.

The harness side (`measure`) makes a throwaway database, seeds it with `python -m bench.prune
seed` (destinations through the ORM, so their keys are encrypted as in production; the old log
with INSERT … SELECT generate_series), starts `deliver_alerts` against the fake PagerDuty, queues
a steady stream of new pages while `prune_deliveries` runs, and checks that every one arrived.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import threading
import time
from pathlib import Path

from . import postgres
from .sites import PYTHON, Site, fake_pagerduty, stop, wait_until

OLD_DELIVERIES = 1_000_000
DESTINATIONS = 10
INCIDENTS = 1000  # dedup keys among the old deliveries (one detection's incidents each)
STREAM_PER_S = 20  # new pages queued per second while the prune runs
PAGERDUTY_LATENCY = 0.005

# The old log: 100 to 158 days old (one every 5 s), 95 % delivered, one attempt each.
SEED_DELIVERIES = """
INSERT INTO destinations_delivery (
    destination_id, run_id, kind, event, dedup_key, status, attempts, total_attempts,
    queued_at, next_attempt_at, lease_expires_at, lease_token, last_status_code,
    pagerduty_message, pagerduty_errors, pagerduty_dedup_key, last_error, created_at,
    delivered_at, finished_at, resolve_after, fallback_of_id
)
SELECT
    %(first_destination)s + g %% %(destinations)s,
    %(first_run)s + g %% %(runs)s,
    'trigger',
    jsonb_build_object(
        'event_action', 'trigger', 'dedup_key', 'old-' || (g %% %(incidents)s),
        'payload', jsonb_build_object(
            'summary', '[HIGH] Suspicious Login Attempts - https://app.example.com/replay/' || g,
            'severity', 'error', 'source', 'https://app.example.com/replay/' || g,
            'custom_details', jsonb_build_object('match_count', g %% 50, 'run_type', 'SCHEDULED')
        )
    ),
    'old-' || (g %% %(incidents)s),
    CASE WHEN g %% 20 = 0 THEN 'failed' ELSE 'delivered' END,
    1, 1, t, t, NULL, NULL, CASE WHEN g %% 20 = 0 THEN 400 ELSE 202 END,
    CASE WHEN g %% 20 = 0 THEN 'Event object is invalid' ELSE 'Event processed' END,
    '[]'::jsonb, '', '', t,
    CASE WHEN g %% 20 = 0 THEN NULL ELSE t + interval '120 milliseconds' END,
    t + interval '120 milliseconds', false, NULL
FROM generate_series(1, %(count)s) AS g,
     -- Ids in the order of time, as the intake makes them: the newest has the highest id.
     LATERAL (
        SELECT now() - interval '100 days' - (%(count)s - g) * interval '5 seconds' AS t
     ) AS moment
"""
SEED_ATTEMPTS = """
INSERT INTO destinations_deliveryattempt (
    delivery_id, number, started_at, duration_ms, status_code, result, response_excerpt, error
)
SELECT id, 1, created_at, 120, last_status_code, status,
       '{"status":"success","message":"Event processed"}', ''
FROM destinations_delivery
"""
QUEUE_LIVE = """
INSERT INTO destinations_delivery (
    destination_id, run_id, kind, event, dedup_key, status, attempts, total_attempts,
    queued_at, next_attempt_at, pagerduty_message, pagerduty_errors, pagerduty_dedup_key,
    last_error, created_at, resolve_after
)
VALUES (%(destination)s, NULL, 'trigger', %(event)s, %(key)s, 'pending', 0, 0, now(), now(),
        '', '[]'::jsonb, '', '', now(), false)
"""


def seed(*, deliveries: int) -> dict:
    """Run inside the site (Django set up): destinations, one detection's runs, the old log."""
    from django.db import connection
    from django.utils import timezone

    from bench.seed import make_destinations
    from detections.models import Detection, DetectionRun

    destinations = make_destinations(DESTINATIONS, prefix="prune bench")
    detection = Detection.objects.create(
        name="Suspicious Login Attempts", severity="HIGH", match_operator="GREATER_THAN"
    )
    now = timezone.now()
    runs = DetectionRun.objects.bulk_create(
        DetectionRun(
            detection=detection,
            run_id=f"old-run-{n}",
            run_type="SCHEDULED",
            outcome="MATCHED",
            match_count=5,
            ran_at=now,
            range_start=now,
            range_end=now,
        )
        for n in range(100)
    )
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            SEED_DELIVERIES,
            {
                "first_destination": min(d.pk for d in destinations),
                "destinations": DESTINATIONS,
                "first_run": min(r.pk for r in runs),
                "runs": len(runs),
                "incidents": INCIDENTS,
                "count": deliveries,
            },
        )
        cursor.execute(SEED_ATTEMPTS)
        cursor.execute("ANALYZE destinations_delivery")
        cursor.execute("ANALYZE destinations_deliveryattempt")
        cursor.execute("SELECT max(id) FROM destinations_delivery")
        last_old = cursor.fetchone()[0]
    return {
        "destinations": [d.pk for d in destinations],
        "last_old": last_old,
        "seed_seconds": round(time.perf_counter() - started, 1),
    }


class Stream(threading.Thread):
    """New pages queued at a steady rate (as the intake would) until stopped; their keys."""

    def __init__(self, database_url: str, destinations: list[int]) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.destinations = destinations
        self.keys: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with postgres.connect(self.database_url) as connection:
            while not self.stopping.is_set():
                key = f"live-{len(self.keys)}"
                event = {
                    "event_action": "trigger",
                    "dedup_key": key,
                    "payload": {"summary": key, "severity": "info", "source": "bench"},
                }
                connection.execute(
                    QUEUE_LIVE,
                    {
                        "destination": self.destinations[len(self.keys) % len(self.destinations)],
                        "event": json.dumps(event),
                        "key": key,
                    },
                )
                self.keys.append(key)
                self.stopping.wait(1 / STREAM_PER_S)


# By id: the stream's rows come after the old log's (a range of the primary key, not a scan).
_COUNT = "SELECT count(*) FROM destinations_delivery WHERE "
STREAM_UNSENT = _COUNT + "id > %(last_old)s AND status <> 'delivered'"
STREAM_DELIVERED = _COUNT + "id > %(last_old)s AND status = 'delivered'"
OLD_LEFT = _COUNT + "id <= %(last_old)s"


def _count(database_url: str, query: str, last_old: int) -> int:
    with postgres.connect(database_url) as connection:
        return connection.execute(query, {"last_old": last_old}).fetchone()[0]


def measure(workdir: Path, *, log=print) -> dict:
    """Seconds prune_deliveries takes over the old log, and whether the worker's pages arrived."""
    url = postgres.server_url()
    if why := postgres.skip_reason(url):
        return {"skipped": why}
    with postgres.databases(url) as create:
        database_url = postgres.with_database(url, create("prune"))
        with fake_pagerduty(latency=PAGERDUTY_LATENCY) as events_url:
            site = Site.create(workdir / "prune", events_url=events_url, database_url=database_url)
            site.manage("migrate", "--noinput")
            log(f"  seeding {OLD_DELIVERIES:,} old deliveries and their attempts…")
            seeded = site.bench_step(
                "prune", "seed", "--deliveries", str(OLD_DELIVERIES), timeout=900
            )
            log(f"  seeded in {seeded['seed_seconds']} s")
            worker = site.spawn(
                PYTHON,
                "manage.py",
                "deliver_alerts",
                "--no-housekeeping",
                "--concurrency",
                "4",
                log="worker",
            )
            stream = Stream(database_url, seeded["destinations"])
            try:
                stream.start()
                time.sleep(2)  # the worker is delivering the stream when the prune starts
                pruned = site.manage("prune_deliveries", timeout=900)
                stream.stopping.set()
                stream.join(timeout=10)
                last_old = seeded["last_old"]
                arrived = wait_until(
                    lambda: _count(database_url, STREAM_UNSENT, last_old) == 0,
                    timeout=300,
                    interval=0.5,
                )
                delivered = _count(database_url, STREAM_DELIVERED, last_old)
                old_left = _count(database_url, OLD_LEFT, last_old)
            finally:
                stop(worker)
    match = re.search(
        r"Pruned ([\d,]+) deliveries and ([\d,]+) attempts .* in ([\d.]+) s "
        r"\(the longest batch ([\d.]+) s\)",
        pruned.stdout,
    )
    if not match:
        raise RuntimeError(f"prune_deliveries said: {pruned.stdout[-2000:]}")
    results = {
        "seconds": round(pruned.seconds, 1),
        "prune_seconds": float(match.group(3)),
        # The longest one batch's transaction held its row locks.
        "longest_batch_seconds": float(match.group(4)),
        "old_deliveries": OLD_DELIVERIES,
        "deleted": int(match.group(1).replace(",", "")),
        "attempts_deleted": int(match.group(2).replace(",", "")),
        # The last event of each incident stays (auto-resolve reads it).
        "kept_incident_heads": old_left,
        "stream_queued": len(stream.keys),
        "stream_delivered": delivered,
        "lost": len(stream.keys) - delivered,
        "all_arrived": bool(arrived and delivered == len(stream.keys)),
    }
    log(
        f"  prune_deliveries: {results['seconds']} s ({results['deleted']:,} deleted), "
        f"{delivered} of {len(stream.keys)} streamed pages delivered meanwhile"
    )
    return results


def main(argv: list[str] | None = None) -> int:
    """The Django-side step: `python -m bench.prune seed --deliveries N`."""
    parser = argparse.ArgumentParser(prog="python -m bench.prune")
    steps = parser.add_subparsers(dest="step", required=True)
    seeding = steps.add_parser("seed", help="destinations and the old delivery log")
    seeding.add_argument("--deliveries", type=int, required=True)
    args = parser.parse_args(argv)
    import django

    django.setup()
    made = seed(deliveries=args.deliveries)
    print(json.dumps(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
