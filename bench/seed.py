"""Fill a benchmark site's database with the ORM: `python -m bench.seed SCENARIO [options]`.

Run in the site's environment (bench.sites.Site.bench_step); prints one JSON line at the end.
"""

from __future__ import annotations

import argparse
import json
import random
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import django

SEVERITIES = ("CRITICAL", "HIGH", "MEDIUM", "LOW")
# Extra details a real destination carries, so events have their usual size (about 1 kB).
CUSTOM_DETAILS = {"team": "detection-engineering", "runbook": "https://runbooks.example/alerts"}
DELIVERY_MIX = (("delivered", 95), ("failed", 3), ("pending", 2))
TEST_SHARE = 0.01


def routing_key() -> str:
    """A well-formed 32-character integration key."""
    return secrets.token_hex(16)


def make_destinations(count: int, *, prefix: str = "bench destination") -> list:
    """Store `count` destinations, each with its own routing key (encrypted in the column)."""
    from django.utils import timezone

    from destinations.models import Destination

    now = timezone.now()
    destinations = []
    for index in range(count):
        destination = Destination(
            name=f"{prefix} {index:05d}",
            routing_key=routing_key(),
            routing_key_rotated_at=now - timedelta(days=index % 120),
            component="detections",
            group="bench",
            custom_details=CUSTOM_DETAILS,
        )
        destinations.append(destination)
    # The attribute keeps the plain key; only the column holds the token.
    return Destination.objects.bulk_create(destinations, batch_size=1000)


def make_detections(destinations: list, count: int, *, prefix: str = "bench detection") -> list:
    """Store `count` detections, detection i sending to destination i mod len(destinations)."""
    from detections.models import Detection

    detections = Detection.objects.bulk_create(
        [
            Detection(
                name=f"{prefix} {index:05d}",
                description="Too many failed logins from one address within five minutes.",
                severity=SEVERITIES[index % len(SEVERITIES)],
                match_operator="GREATER_THAN",
                match_threshold=10,
            )
            for index in range(count)
        ],
        batch_size=1000,
    )
    through = Detection.destinations.through
    through.objects.bulk_create(
        [
            through(detection_id=d.pk, destination_id=destinations[i % len(destinations)].pk)
            for i, d in enumerate(detections)
        ],
        batch_size=1000,
    )
    return detections


def run_body(detection, run_id: str, ran_at) -> dict:
    """The API body of a matching run of this detection."""
    return {
        "detection_id": str(detection.pk),
        "run_id": run_id,
        "run_type": "SCHEDULED",
        "match_count": 42,
        "ran_at": ran_at.isoformat(),
        "range_start": (ran_at - timedelta(minutes=5)).isoformat(),
        "range_end": ran_at.isoformat(),
        "match_exhaustiveness": "COMPLETED",
        "search_id": f"search-{run_id}",
        "trace_id": secrets.token_hex(16),
    }


def unsaved_run(detection, body: dict):
    """The run the intake would store for this body (a match), without storing it."""
    from django.utils.dateparse import parse_datetime

    from detections.models import DetectionRun

    return DetectionRun(
        detection=detection,
        run_id=body["run_id"],
        run_type=body["run_type"],
        outcome="MATCHED",
        match_count=body["match_count"],
        ran_at=parse_datetime(body["ran_at"]),
        range_start=parse_datetime(body["range_start"]),
        range_end=parse_datetime(body["range_end"]),
        match_exhaustiveness=body["match_exhaustiveness"],
        search_id=body["search_id"],
        trace_id=body["trace_id"],
    )


def seed_outbox(*, deliveries: int, destinations: int, events_file: Path) -> dict:
    """Due deliveries of distinct detections over the destinations, queued as the intake does.

    The posted bodies (routing key included) go to `events_file`, one per line, for the
    plain-client baseline to send the very same bytes.
    """
    from django.db import transaction
    from django.utils import timezone

    from destinations.delivery.outbox import enqueue_run_deliveries
    from destinations.pagerduty.events import serialize_event
    from detections.models import DetectionRun

    with transaction.atomic():
        targets = make_destinations(destinations)
        keys = {d.pk: d.routing_key for d in targets}
        detections = make_detections(targets, deliveries)
        now = timezone.now()
        runs = DetectionRun.objects.bulk_create(
            [
                unsaved_run(detection, run_body(detection, f"bench-run-{i:06d}", now))
                for i, detection in enumerate(detections)
            ],
            batch_size=1000,
        )
        queued = [delivery for run in runs for delivery in enqueue_run_deliveries(run)]
    with events_file.open("w") as out:
        for delivery in queued:
            body = serialize_event(delivery.event, routing_key=keys[delivery.destination_id])
            out.write(body.decode() + "\n")
    return {"deliveries": len(queued)}


# The latency runs' destinations: an installation's few, each paged already in the warm-up (as
# any destination in use has been), so a run's claim is the one a working site makes. One
# destination per run made every claim its destination's first (creating its send budget).
LATENCY_DESTINATIONS = 10


def seed_latency(*, runs: int, plan_file: Path) -> dict:
    """A detection per run, paging one of a few destinations; each run's API body and event."""
    from django.conf import settings
    from django.utils import timezone

    from destinations.delivery.outbox import build_run_event
    from destinations.pagerduty.events import serialize_event

    targets = make_destinations(LATENCY_DESTINATIONS)
    detections = make_detections(targets, runs)
    plan = []
    now = timezone.now()
    for index, detection in enumerate(detections):
        # As make_detections() links them.
        destination = targets[index % len(targets)]
        body = run_body(detection, f"latency-run-{index:05d}", now)
        event = build_run_event(unsaved_run(detection, body), destination)
        posted = serialize_event(event, routing_key=destination.routing_key)
        plan.append({"body": body, "run_id": body["run_id"], "event": posted.decode()})
    plan_file.write_text(json.dumps(plan))
    return {"runs": len(plan), "events_url": settings.PAGERDUTY_EVENTS_URL}


def seed_history(*, destinations: int, deliveries: int, days: int = 30) -> dict:
    """A delivery log of `deliveries` rows over the last `days` days, statuses as in real use."""
    from django.db import transaction
    from django.utils import timezone

    from destinations.delivery.outbox import build_run_event
    from destinations.models import Delivery

    rng = random.Random(7)
    now = timezone.now()
    with transaction.atomic():
        targets = make_destinations(destinations)
        detections = make_detections(targets, min(50, destinations * 5))
        events = []
        for index, detection in enumerate(detections):
            body = run_body(detection, f"history-run-{index:05d}", now)
            events.append(build_run_event(unsaved_run(detection, body), targets[0]))
        statuses = [status for status, weight in DELIVERY_MIX for _ in range(weight)]
        rows = []
        for _ in range(deliveries):
            created = now - timedelta(seconds=rng.uniform(0, days * 86400))
            status = rng.choice(statuses)
            kind = "test" if rng.random() < TEST_SHARE else "trigger"
            event = rng.choice(events)
            latency = timedelta(milliseconds=rng.lognormvariate(4.5, 0.6))
            finished = created + latency if status in ("delivered", "failed") else None
            rows.append(
                Delivery(
                    destination=rng.choice(targets),
                    kind=kind,
                    event=event,
                    dedup_key=event["dedup_key"],
                    status=status,
                    attempts=1 if status == "delivered" else rng.randint(1, 5),
                    total_attempts=1,
                    queued_at=created,
                    next_attempt_at=created,
                    created_at=created,
                    delivered_at=finished if status == "delivered" else None,
                    finished_at=finished,
                    last_status_code={"delivered": 202, "failed": 400}.get(status),
                    pagerduty_message="Event processed" if status == "delivered" else "",
                    pagerduty_dedup_key=event["dedup_key"] if status == "delivered" else "",
                    last_error="Event object is invalid" if status == "failed" else "",
                )
            )
        Delivery.objects.bulk_create(rows, batch_size=2000)
    return {"destinations": destinations, "deliveries": deliveries}


def regroup(*, destinations: int) -> dict:
    """Move every delivery onto the first `destinations` destinations and delete the others.

    Cheaper than writing a second delivery log: the same rows, spread over fewer destinations.
    """
    from django.db import transaction
    from django.db.models import F

    from destinations.models import Delivery, Destination

    keep = list(Destination.objects.order_by("pk").values_list("pk", flat=True)[:destinations])
    first = keep[0]
    with transaction.atomic():
        Delivery.objects.update(destination_id=(F("destination_id") - first) % destinations + first)
        Destination.objects.exclude(pk__in=keep).delete()
    return {"destinations": Destination.objects.count(), "deliveries": Delivery.objects.count()}


def seed_keys(*, destinations: int) -> dict:
    """Destinations only, every routing key encrypted under the current first key."""
    from django.db import transaction

    with transaction.atomic():
        make_destinations(destinations)
    return {"destinations": destinations}


def checkpoint() -> None:
    """Fold SQLite's write-ahead log into the database file, so copying the file copies it all."""
    from django.db import connection

    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()


def main(argv: list[str] | None = None) -> int:
    """Seed one scenario and print what was made as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.seed")
    scenarios = parser.add_subparsers(dest="scenario", required=True)
    outbox = scenarios.add_parser("outbox", help="due deliveries for the throughput runs")
    outbox.add_argument("--deliveries", type=int, required=True)
    outbox.add_argument("--destinations", type=int, required=True)
    outbox.add_argument("--events-file", type=Path, required=True)
    latency = scenarios.add_parser("latency", help="detections for the latency run")
    latency.add_argument("--runs", type=int, required=True)
    latency.add_argument("--plan-file", type=Path, required=True)
    history = scenarios.add_parser("history", help="a delivery log for the admin pages")
    history.add_argument("--destinations", type=int, required=True)
    history.add_argument("--deliveries", type=int, required=True)
    fewer = scenarios.add_parser("regroup", help="the same delivery log over fewer destinations")
    fewer.add_argument("--destinations", type=int, required=True)
    keys = scenarios.add_parser("keys", help="destinations for the key rotation")
    keys.add_argument("--destinations", type=int, required=True)
    args = parser.parse_args(argv)

    django.setup()
    if args.scenario == "outbox":
        made = seed_outbox(
            deliveries=args.deliveries,
            destinations=args.destinations,
            events_file=args.events_file,
        )
    elif args.scenario == "latency":
        made = seed_latency(runs=args.runs, plan_file=args.plan_file)
    elif args.scenario == "history":
        made = seed_history(destinations=args.destinations, deliveries=args.deliveries)
    elif args.scenario == "regroup":
        made = regroup(destinations=args.destinations)
    else:
        made = seed_keys(destinations=args.destinations)
    checkpoint()
    print(json.dumps(made))
    return 0


if __name__ == "__main__":
    sys.exit(main())
