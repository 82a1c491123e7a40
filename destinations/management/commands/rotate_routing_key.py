import getpass
import sys
from pathlib import Path

from django.core.management.base import CommandError

from destinations.keys.encryption import DecryptionError
from destinations.keys.rotation import RotationRefused, rotate_routing_key
from destinations.management.lookup import destination_by_name_or_id
from project.commands import ProductCommand

PROMPT = "New routing key (not shown): "
REPEAT_PROMPT = "The same key again: "


class Command(ProductCommand):
    help = (
        "Replace a destination's routing key. The new key is read from standard input (its first "
        "line) when that is not a terminal, else prompted for twice without echo, or read from "
        "--from-file; it is never taken from the command line, where shell history would keep it. "
        "The key is proved with a test event (resolved at once) before it replaces the old one."
    )

    def add_arguments(self, parser):
        parser.add_argument("destination", help="The destination's name or id.")
        parser.add_argument(
            "--from-file",
            metavar="PATH",
            help="Read the new key from the first line of this file instead of standard input.",
        )
        parser.add_argument(
            "--skip-test",
            action="store_true",
            help="Store the key without sending a test event (when this server cannot reach "
            "PagerDuty by design); PagerDuty has then not confirmed the key.",
        )
        parser.add_argument(
            "--actor",
            help="Who is rotating, for the audit record (default: your login name). The admin "
            "history entry goes under the account with this username, else the first superuser.",
        )

    def handle(self, *args, destination: str, from_file, skip_test: bool, actor, **options):
        target = _destination(destination)
        new_key = _read_from_file(from_file) if from_file else _read_new_key()
        try:
            result = rotate_routing_key(
                destination=target,
                new_key=new_key,
                actor=actor or _login_name(),
                skip_test=skip_test,
            )
        except RotationRefused as refusal:
            raise CommandError(str(refusal)) from None
        self.stdout.write(self.style.SUCCESS(result.summary()))


def _destination(value: str):
    try:
        return destination_by_name_or_id(value)
    except DecryptionError as error:
        raise CommandError(str(error)) from None


def _read_new_key() -> str:
    # Looked up at call time, so whatever stdin is now (a pipe, a test's StringIO) is used.
    stdin = sys.stdin
    if stdin is not None and not stdin.isatty():
        key = stdin.readline()
        if not key.strip():
            raise CommandError(
                "Standard input held no key: pipe the new key in (first line), use --from-file, "
                "or run the command in a terminal to be prompted."
            )
        return key
    try:
        key = getpass.getpass(PROMPT)
        if getpass.getpass(REPEAT_PROMPT) != key:
            raise CommandError("The two keys entered differ; nothing was changed.")
    except EOFError:
        raise CommandError("No key entered; nothing was changed.") from None
    return key


def _read_from_file(path: str) -> str:
    try:
        with Path(path).open(encoding="utf-8") as file:
            return file.readline()
    except (OSError, UnicodeDecodeError) as error:
        # The reason only (no such file, permission denied); never the file's contents.
        reason = error.strerror if isinstance(error, OSError) else "it is not UTF-8 text"
        raise CommandError(f"Cannot read the key from {path}: {reason}.") from None


def _login_name() -> str:
    try:
        return getpass.getuser()
    except OSError:
        # No login name in some containers; the audit record still says it came from here.
        return "unknown operator"
