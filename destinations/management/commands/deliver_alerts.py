import argparse
import signal
import sys

from django.core.checks import Tags
from django.core.management.base import CommandError

from destinations.checks import ENCRYPTION_TAG
from destinations.delivery.worker import Worker
from project.commands import ServiceCommand

MAX_CONCURRENCY = 64
# How long a thread of the worker holds the interpreter while another waits for it (see handle).
SWITCH_INTERVAL_SECONDS = 0.002


class Command(ServiceCommand):
    help = (
        "Deliver queued PagerDuty events: claim due deliveries with a lease, send them, retry "
        "with backoff. Runs until SIGTERM/SIGINT (finishing what is in flight), or with --once "
        "until nothing is due."
    )
    # The checks a worker needs before it sends: the models and the encryption keys. Not the URL
    # checks: they import the whole API (its schema library), which added 0.3 s to every start
    # (bench: throughput.startup_s 0.57 s → 0.87 s), and a worker serves no URL.
    requires_system_checks = [Tags.models, ENCRYPTION_TAG]

    def add_arguments(self, parser):
        parser.add_argument(
            "--once",
            action="store_true",
            help="Send what is due now and exit; retries due later wait for the next run.",
        )
        parser.add_argument(
            "--concurrency",
            type=int,
            default=4,
            help=f"Deliveries sent at the same time, 1 to {MAX_CONCURRENCY} (default 4).",
        )
        parser.add_argument(
            "--housekeeping",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="Run the daily housekeeping (rollups, prune_deliveries) in a background thread "
            "when it is due and no other worker runs it: on by default, off with --once unless "
            "asked (--once --housekeeping waits for it before exiting).",
        )

    def handle(self, *args, once: bool, concurrency: int, housekeeping: bool | None, **options):
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise CommandError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}.")
        # This process is the worker's own: its sending threads hold the interpreter in short
        # turns between their reads, and the thread claiming and recording waits for it after
        # every answer of the database. Asked to hand over after 2 ms rather than Python's 5,
        # the others let it in sooner: on PostgreSQL about 290 deliveries/s instead of 265
        # (bench `postgres`, one worker process with --concurrency 8).
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        worker = Worker(concurrency=concurrency)
        if housekeeping is None:
            housekeeping = not once
        housekeeper = None
        if housekeeping:
            # Imported only here: `--once` runs none by default, and need not load it at start.
            from destinations.retention.housekeeping import Housekeeper

            # Beside the delivery rounds, never inside them: a long prune must not delay a page.
            housekeeper = Housekeeper(once=once)

        def stop(signum, frame):
            if worker.stopping:
                raise SystemExit(f"Stopped at once by a second {signal.Signals(signum).name}.")
            self.stderr.write(
                f"{signal.Signals(signum).name}: finishing the deliveries in flight, then stopping"
                " (send it again to stop at once; their leases then expire and they are retried)."
            )
            worker.stop()
            if housekeeper:
                housekeeper.stop()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        if not once:
            self.stdout.write(f"Delivering with concurrency {concurrency}; Ctrl-C stops.")
        if housekeeper:
            housekeeper.start()
        try:
            stats = worker.run(once=once)
        finally:
            if housekeeper:
                if not once:
                    housekeeper.stop()
                housekeeper.join()
        self.stdout.write(f"Worker stopped: {stats}.")
