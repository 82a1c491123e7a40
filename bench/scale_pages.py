"""The Django side of the scale benchmark: `python -m bench.scale_pages setup|time [options]`.

Run in the site's environment (bench.sites.Site.bench_step); prints one JSON line at the end.
`setup` stores the destinations and detections through the ORM and prints each detection's
event; `time` times every admin page, /healthz, /metrics and the worker's claim on each database
named, taking turns. Pages go through the whole middleware stack by Django's test client, logged
in as a superuser (as bench/page_timing.py does), so the figures are the views' own cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import django

# The delivery filters of the list, each as its query string.
DELIVERY_FILTERS = {
    "deliveries_failed": "status__exact=failed",
    "deliveries_pending": "status__exact=pending",
    "deliveries_test": "kind__exact=test",
    "deliveries_trigger": "kind__exact=trigger",
    "deliveries_destination": "destination__id__exact={destination}",
    "deliveries_day": "created_at__year={year}&created_at__month={month}&created_at__day={day}",
    "deliveries_failed_destination": "status__exact=failed&destination__id__exact={destination}",
}
# A claim as `deliver_alerts` makes it with its default --concurrency.
CLAIM_BATCH = 4
RUN_FILTERS = {
    "runs_matched": "outcome__exact=MATCHED",
    "runs_error": "outcome__exact=ERROR",
    "runs_manual": "run_type__exact=MANUAL",
    "runs_detection": "detection__id__exact={detection}",
}


def setup(*, destinations: int, detections: int) -> dict:
    """Destinations and detections (detection i sends to destination i mod n), with events."""
    from django.db import transaction
    from django.utils import timezone

    from destinations.delivery.outbox import build_run_event

    from .seed import make_destinations, make_detections, run_body, unsaved_run

    with transaction.atomic():
        targets = make_destinations(destinations, prefix="scale destination")
        made = make_detections(targets, detections, prefix="scale detection")
    now = timezone.now()
    events = []
    for index, detection in enumerate(made):
        destination = targets[index % len(targets)]
        run = unsaved_run(detection, run_body(detection, f"scale-sample-{index}", now))
        events.append(
            {
                "destination_id": destination.pk,
                "detection_id": str(detection.pk),
                "event": build_run_event(run, destination),
            }
        )
    return {"events": events}


def claim_once() -> int:
    """The worker's claim of a batch inside a transaction rolled back (nothing is sent)."""
    from django.db import transaction

    from destinations.delivery.claims import claim_due

    class RolledBack(Exception):
        pass

    try:
        with transaction.atomic():
            raise RolledBack(len(claim_due(limit=CLAIM_BATCH)))
    except RolledBack as done:
        return done.args[0]


def pages() -> dict[str, str]:
    """Every admin page to time, with real ids of this database's rows."""
    from django.urls import reverse

    from destinations.models import Delivery, Destination
    from detections.models import Detection, DetectionRun

    # The first destination is the one failing today (bench/scale.py), so its failures fill a
    # page of the list at both sizes.
    destination = Destination.objects.order_by("pk").first()
    detection = Detection.objects.order_by("name").first()
    delivery = Delivery.objects.filter(status="delivered").order_by("-created_at", "-id").first()
    run = DetectionRun.objects.order_by("-ran_at", "-id").first()
    day = delivery.created_at
    values = {
        "destination": destination.pk,
        "detection": detection.pk,
        "year": day.year,
        "month": day.month,
        "day": day.day,
    }
    deliveries = reverse("admin:destinations_delivery_changelist")
    runs = reverse("admin:detections_detectionrun_changelist")
    found = {
        "index": reverse("admin:index"),
        "destinations": reverse("admin:destinations_destination_changelist"),
        "destination": reverse("admin:destinations_destination_change", args=[destination.pk]),
        "detections": reverse("admin:detections_detection_changelist"),
        "detection": reverse("admin:detections_detection_change", args=[detection.pk]),
        "runs": runs,
        **{name: f"{runs}?{query.format(**values)}" for name, query in RUN_FILTERS.items()},
        "run": reverse("admin:detections_detectionrun_change", args=[run.pk]),
        "deliveries": deliveries,
        **{
            name: f"{deliveries}?{query.format(**values)}"
            for name, query in DELIVERY_FILTERS.items()
        },
        "deliveries_page_2": f"{deliveries}?p=2",
        "delivery": reverse("admin:destinations_delivery_change", args=[delivery.pk]),
        "health": reverse("admin:destinations_health"),
    }
    return found


def use_database(name: str) -> None:
    """Point the default connection at another database of the same server, connected."""
    from django.db import connections

    connection = connections["default"]
    connection.close()
    connection.settings_dict["NAME"] = name
    connection.ensure_connection()


def roll_up(databases: list[str]) -> dict:
    """Each store's past days rolled up, as the worker's daily housekeeping leaves a live store."""
    from destinations.retention.rollups import roll_up_past_days

    seconds = {}
    for name in databases:
        use_database(name)
        started = time.perf_counter()
        roll_up_past_days()
        seconds[name] = round(time.perf_counter() - started, 1)
    return seconds


def timed(run) -> tuple[float, int]:
    """Milliseconds of one call of `run`, and the status it returns (200, 404…)."""
    started = time.perf_counter()
    status = run()
    return 1000 * (time.perf_counter() - started), status


def time_all(*, requests: int, databases: list[str]) -> dict:
    """Each item's median on each database, the databases taking turns request by request.

    Taking turns puts the small and the large store under the same load from whatever else
    runs on the machine, so their ratio is the store's doing, not the neighbours'.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    clients = {}
    for name in databases:
        use_database(name)
        users = get_user_model().objects
        user = users.filter(username="bench").first() or users.create_superuser("bench", None, None)
        clients[name] = Client()
        clients[name].force_login(user)  # the session is stored in this database
    use_database(databases[0])
    paths = pages()
    anonymous = Client()

    def item(name: str, database: str):
        """A call that runs the item once on the current database and returns its status."""
        if name == "claim":
            return lambda: claim_once() >= 0 and 200
        if name in ("healthz", "metrics"):
            return lambda: anonymous.get(f"/{name}").status_code
        return lambda: clients[database].get(paths[name]).status_code

    results: dict = {database: {} for database in databases}
    for name in [*paths, "healthz", "metrics", "claim"]:
        times: dict[str, list[float]] = {database: [] for database in databases}
        for database in databases:
            use_database(database)
            run = item(name, database)
            _, status = timed(run)  # warms caches (templates, content types)
            with CaptureQueriesContext(connection) as queries:
                timed(run)
            results[database][name] = {"status": status, "queries": len(queries)}
        if any(results[database][name]["status"] != 200 for database in databases):
            continue
        for _ in range(requests):
            for database in databases:
                use_database(database)
                times[database].append(timed(item(name, database))[0])
        for database in databases:
            results[database][name]["p50_ms"] = round(statistics.median(times[database]), 1)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_pages")
    steps = parser.add_subparsers(dest="step", required=True)
    made = steps.add_parser("setup", help="destinations and detections, printing their events")
    made.add_argument("--destinations", type=int, required=True)
    made.add_argument("--detections", type=int, required=True)
    rolled = steps.add_parser("rollup", help="roll up past days, as the daily housekeeping does")
    rolled.add_argument("databases", nargs="+", help="databases of the same server")
    timed = steps.add_parser("time", help="time every page, /healthz, /metrics and the claim")
    timed.add_argument("--requests", type=int, default=5, help="timed requests per page")
    timed.add_argument(
        "databases", nargs="+", help="databases of the same server to time, taking turns"
    )
    args = parser.parse_args(argv)
    django.setup()
    if args.step == "setup":
        result = setup(destinations=args.destinations, detections=args.detections)
    elif args.step == "rollup":
        result = roll_up(args.databases)
    else:
        result = time_all(requests=args.requests, databases=args.databases)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
