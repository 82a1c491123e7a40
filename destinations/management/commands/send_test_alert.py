import getpass

from django.core.management.base import CommandError

from destinations.keys.encryption import DecryptionError
from destinations.management.lookup import destination_by_name_or_id
from destinations.services import send_test_alert
from project.commands import ProductCommand


class Command(ProductCommand):
    help = "Send a test alert to a destination now; exits 0 only when PagerDuty accepted it."

    def add_arguments(self, parser):
        parser.add_argument("destination", help="The destination's name or id.")
        parser.add_argument(
            "--resolve",
            action="store_true",
            help="Resolve the test incident right after PagerDuty accepts it.",
        )

    def handle(self, *args, destination: str, resolve: bool, **options):
        try:
            target = destination_by_name_or_id(destination)
            outcome = send_test_alert(
                destination=target, sent_by=f"{getpass.getuser()} (command line)", resolve=resolve
            )
        except DecryptionError as error:
            raise CommandError(str(error)) from None
        resolve_failed = outcome.resolve_result is not None and not outcome.resolve_result.accepted
        if not outcome.accepted or resolve_failed:
            raise CommandError(outcome.summary())
        self.stdout.write(self.style.SUCCESS(outcome.summary()))
