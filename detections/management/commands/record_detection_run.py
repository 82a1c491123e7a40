import json
import sys

from django.core.management.base import CommandError
from django.db import InterfaceError, OperationalError

from detections.intake import MAX_BODY_BYTES, InvalidRunBody, parse_body
from detections.services import DetectionNotFound, record_detection_run
from project.commands import ProductCommand


class Command(ProductCommand):
    help = (
        "Record a detection run from the API's JSON body (a file, or stdin) and queue its "
        "deliveries; prints the API's answer."
    )
    # call_command(..., stdin=stream) lets tests and scripts hand the body over directly.
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument(
            "file",
            nargs="?",
            default="-",
            help="A file holding the JSON body; '-' or nothing reads stdin.",
        )

    def handle(self, *args, file: str, **options):
        raw = self.read_body(file, options.get("stdin") or sys.stdin)
        try:
            recorded = record_detection_run(data=parse_body(raw))
        except (InvalidRunBody, DetectionNotFound) as error:
            raise CommandError(describe_refusal(error.errors)) from None
        except (OperationalError, InterfaceError) as error:
            # As the API's 503: a reason to run it again later, not a refusal of the body.
            raise CommandError(
                f"The database is unreachable ({type(error).__name__}); nothing was stored. "
                "Run the command again later."
            ) from None
        if not recorded.created:
            self.stderr.write(f"Run {recorded.run.run_id!r} was recorded before; nothing new.")
        self.stdout.write(json.dumps(recorded.as_response(), indent=2))

    def read_body(self, file: str, stdin) -> bytes:
        """Read at most the API's limit (plus one byte, to tell when it is over)."""
        try:
            if file == "-":
                stream = getattr(stdin, "buffer", stdin)
                raw = stream.read(MAX_BODY_BYTES + 1)
            else:
                with open(file, "rb") as handle:
                    raw = handle.read(MAX_BODY_BYTES + 1)
        except OSError as error:
            raise CommandError(f"Cannot read {file}: {error.strerror or error}.") from None
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        if len(raw) > MAX_BODY_BYTES:
            raise CommandError(f"The body is over {MAX_BODY_BYTES} bytes, the API's limit.")
        return raw


def describe_refusal(errors: dict[str, list[str]]) -> str:
    """The refused fields, one per line, as the API would list them."""
    lines = [f"  {field}: {' '.join(messages)}" for field, messages in errors.items()]
    return "The run was not recorded:\n" + "\n".join(lines)
