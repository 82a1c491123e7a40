from django.conf import settings
from django.core.management.base import CommandError

from destinations.retention.housekeeping import (
    claim,
    holder_name,
    lease_holder,
    release,
    run_housekeeping,
)
from destinations.retention.prune import DEFAULT_BATCH_SIZE, PruneError, prune_deliveries
from project.commands import ProductCommand, positive_int


class Command(ProductCommand):
    help = (
        "Roll up every past day not rolled up yet (the health page's history), then delete "
        "finished deliveries (delivered or failed) that finished more than "
        "DELIVERY_RETENTION_DAYS ago, with their attempts, in short batches: safe while workers "
        "deliver, and to interrupt and run again. Pending and sending deliveries are never "
        "deleted. The worker runs this daily. Exit 0 when done, 1 when it could not run."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing and roll nothing up.",
        )
        parser.add_argument(
            "--days",
            type=positive_int,
            default=None,
            help="Keep this many days instead of DELIVERY_RETENTION_DAYS "
            f"(now {settings.DELIVERY_RETENTION_DAYS}).",
        )
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Deliveries deleted per transaction (default {DEFAULT_BATCH_SIZE}).",
        )

    def handle(self, *args, dry_run: bool, days: int | None, batch_size: int, **options):
        retention_days = settings.DELIVERY_RETENTION_DAYS if days is None else days
        if retention_days < 1:
            raise CommandError(
                f"DELIVERY_RETENTION_DAYS is {retention_days}; it must be a whole number of "
                "days, at least 1."
            )
        progress = self.stdout.write if options["verbosity"] else None
        try:
            if dry_run:
                report = prune_deliveries(retention_days=retention_days, dry_run=True)
                self.stdout.write(str(report))
                return
            holder = holder_name()
            if not claim(holder=holder, due_only=False):
                who, until = lease_holder()
                until = f" until {until:%Y-%m-%d %H:%M:%S %Z} at the latest" if until else ""
                raise CommandError(
                    f"Housekeeping is already running ({who or 'another process'}, holding it"
                    f"{until}); run this again later."
                )
            try:
                report = run_housekeeping(
                    holder=holder,
                    retention_days=retention_days,
                    batch_size=batch_size,
                    progress=progress,
                )
            except KeyboardInterrupt:
                release(holder=holder, result="interrupted")
                raise CommandError(
                    "Interrupted: what was pruned stays pruned; run it again to go on.",
                    returncode=130,
                ) from None
            except Exception as error:
                release(holder=holder, result=f"failed: {error}")
                raise
            release(holder=holder, result=str(report))
        except PruneError as error:
            raise CommandError(str(error)) from None
        rolled = str(report.rollups)
        self.stdout.write(f"{rolled[0].upper()}{rolled[1:]}.")
        self.stdout.write(str(report.pruned))
