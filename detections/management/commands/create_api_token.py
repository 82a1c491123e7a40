from django.core.management.base import CommandError

from detections.tokens import TokenNameRefused, create_api_token
from project.commands import ProductCommand


class Command(ProductCommand):
    help = (
        "Create a bearer token for POST /api/v1/detection-runs. It is printed once, alone on the "
        "last line, and only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="A unique name for the token, e.g. the engine using it.")

    def handle(self, *args, name: str, **options):
        try:
            token = create_api_token(name=name)
        except TokenNameRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"Created API token “{name.strip()}”. Copy it now: it is not stored and cannot be "
            "shown again. Send it as Authorization: Bearer <token>."
        )
        self.stdout.write(token)
