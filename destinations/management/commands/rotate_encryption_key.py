from django.core.management.base import CommandError

from destinations.audit.attribution import acting, command_via
from destinations.keys.encryption import EncryptionKeyError
from destinations.keys.rotation import DEFAULT_BATCH_SIZE, rotate_encryption_keys
from project.commands import ProductCommand, positive_int


class Command(ProductCommand):
    help = (
        "Re-encrypt every encrypted value under the first key of FIELD_ENCRYPTION_KEYS, in "
        "batches that each commit on their own: safe to interrupt and run again. Values no key "
        "can decrypt are named and left untouched, and make the command exit 1. With --check, "
        "nothing changes and the exit status is 0 when every value is under the first key, "
        "1 when some are not."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--batch-size",
            type=positive_int,
            default=DEFAULT_BATCH_SIZE,
            help=f"Values read and written per transaction (default {DEFAULT_BATCH_SIZE}).",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Change nothing; report how many values are not yet under the first key "
            "(exit 0 when none, 1 when some are or some cannot be decrypted).",
        )

    def handle(self, *args, batch_size: int, check: bool, **options):
        try:
            with acting(via=command_via("rotate_encryption_key")):
                report = rotate_encryption_keys(
                    batch_size=batch_size,
                    check_only=check,
                    progress=self.stdout.write if options["verbosity"] else None,
                )
        except EncryptionKeyError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(report.summary())
        problems = []
        if report.undecryptable:
            problems.append(
                f"{len(report.undecryptable)} value(s) cannot be decrypted with any key in "
                f"FIELD_ENCRYPTION_KEYS and were left untouched: "
                f"{', '.join(report.undecryptable)}. Add the key that encrypted them back to "
                "FIELD_ENCRYPTION_KEYS (after the first) and run again."
            )
        if check and report.not_current:
            problems.append(
                f"{report.not_current} value(s) are not yet under the first key; run "
                "python manage.py rotate_encryption_key to re-encrypt them."
            )
        if problems:
            raise CommandError(" ".join(problems))
        self.stdout.write(self.style.SUCCESS("Every encrypted value is under the first key."))
