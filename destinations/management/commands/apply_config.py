import sys
from pathlib import Path

from django.core.management.base import CommandError

from destinations.audit.attribution import acting, command_via
from destinations.configuration import STDIN_SOURCE
from destinations.configuration.apply import apply_config
from destinations.configuration.document import CONFIG_MAX_BYTES, ConfigRefused, parse_yaml
from project.commands import ProductCommand

_MB = CONFIG_MAX_BYTES // (1024 * 1024)


class Command(ProductCommand):
    help = (
        "Make the destinations and detections match a configuration file (YAML or JSON, as "
        "export_config writes it), in one transaction, after checking every record as the admin "
        "form does. Prints the plan: + create, ~ update (one line per field), = unchanged, "
        "- delete (with --prune). Keys come from {is_secret: true, from_env: NAME} or "
        "{is_secret: true, from_file: PATH}; {is_secret: true} alone keeps the stored key."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="The configuration file, or - to read it from standard input."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the plan and change nothing.",
        )
        parser.add_argument(
            "--check",
            action="store_true",
            help="Print the plan, change nothing, and exit 1 if applying would change anything "
            "(drift detection in CI); exit 0 when the database matches the file.",
        )
        parser.add_argument(
            "--prune",
            action="store_true",
            help="Delete the destinations and detections the file does not name (with their "
            "delivery log and runs). Without it they are kept and no longer managed.",
        )

    def handle(self, *args, file: str, dry_run: bool, check: bool, prune: bool, **options):
        text, source, base_dir = _read(file, options.get("stdin") or sys.stdin)
        try:
            with acting(via=command_via("apply_config", source)):
                plan = apply_config(
                    data=parse_yaml(text),
                    managed_by=source,
                    dry_run=dry_run or check,
                    prune=prune,
                    base_dir=base_dir,
                )
        except ConfigRefused as refusal:
            listed = "\n".join(f"  {path or source}: {message}" for path, message in refusal.errors)
            count = len(refusal.errors)
            raise CommandError(
                f"{source} was refused ({count} error{'s' * (count != 1)}); nothing was "
                f"changed:\n{listed}"
            ) from None
        for line in plan.lines():
            self.stdout.write(line)
        self.stdout.write(plan.summary())
        if check and plan.changed:
            raise CommandError(
                "The database differs from the file (see the plan above); apply the file to make "
                "them match.",
                returncode=1,
            )


def _read(file: str, stdin) -> tuple[str, str, Path]:
    """The file's text, how records name it (managed_by), and where its from_file paths start."""
    if file == "-":
        text = stdin.read(CONFIG_MAX_BYTES + 1)
        if len(text) > CONFIG_MAX_BYTES:
            raise CommandError(f"Standard input is over {_MB} MB; nothing was changed.")
        return text, STDIN_SOURCE, Path.cwd()
    path = Path(file)
    try:
        with path.open("rb") as stream:
            raw = stream.read(CONFIG_MAX_BYTES + 1)
    except OSError as error:
        raise CommandError(f"Cannot read {file}: {error.strerror or error}.") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise CommandError(
            f"{file} is over {CONFIG_MAX_BYTES // 1024 // 1024} MB; nothing was read."
        )
    try:
        return raw.decode("utf-8"), file, path.parent
    except UnicodeDecodeError:
        raise CommandError(f"{file} is not UTF-8 text; nothing was changed.") from None
