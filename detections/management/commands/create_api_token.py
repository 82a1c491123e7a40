from django.core.management.base import CommandError

from detections.models import TokenScope
from detections.tokens import TokenNameRefused, create_api_token
from project.commands import ProductCommand

SCOPE_USES = {
    TokenScope.RUNS: "POST /api/v1/detection-runs",
    TokenScope.CONFIG: "GET and POST /api/v1/config",
}


class Command(ProductCommand):
    help = (
        "Create a bearer token for the HTTP API: scope runs (the default) records detection "
        "runs, scope config exports and applies the configuration. It is printed once, alone "
        "on the last line, and only its hash is stored."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="A unique name for the token, e.g. the engine using it.")
        parser.add_argument(
            "--scope",
            choices=TokenScope.values,
            default=TokenScope.RUNS,
            help="runs: POST /api/v1/detection-runs (default); config: GET and POST "
            "/api/v1/config. A token has one scope.",
        )

    def handle(self, *args, name: str, scope: str, **options):
        try:
            token = create_api_token(name=name, scope=scope)
        except TokenNameRefused as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"Created API token “{name.strip()}” for {SCOPE_USES[scope]} (scope {scope}). Copy "
            "it now: it is not stored and cannot be shown again. Send it as "
            "Authorization: Bearer <token>."
        )
        self.stdout.write(token)
