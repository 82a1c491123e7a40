"""The base of every product command: it never echoes an argument that could be a key."""

import logging
import os
import re
import sys
from argparse import ArgumentTypeError

from django.core.management.base import BaseCommand, CommandError, CommandParser

# A routing key is 32 letters and digits; anything this long made only of them may be one
# (pasted with a character more or less), so it is never repeated back.
_KEY_SHAPED = re.compile(r"[A-Za-z0-9]{20,}")
HIDDEN = "(an argument not shown)"
NO_KEY_ARGUMENTS = (
    "no command takes a routing key as an argument: rotate_routing_key reads it from "
    "standard input, a prompt or --from-file"
)

# Info lines that stay on the console even when a command is quiet: the audit record of a
# key rotation is one (it may be the only one, when no admin account exists).
AUDIT_LOGGERS = ("destinations.rotation",)


def positive_int(value: str) -> int:
    """An option's whole number of at least 1 (a batch size, days), else a usage error."""
    if not value.isdigit() or int(value) < 1:
        raise ArgumentTypeError(f"expected a whole number of at least 1, not {value!r}")
    return int(value)


def looks_like_a_key(value: object) -> bool:
    """Tell whether a command-line value is shaped like a routing key."""
    return isinstance(value, str) and _KEY_SHAPED.fullmatch(value) is not None


def hide_keys(message: str, values) -> str:
    """The message with every key-shaped value among `values` replaced by a placeholder."""
    # Longest first, so a value that contains another is hidden whole.
    for value in sorted({v for v in values if looks_like_a_key(v)}, key=len, reverse=True):
        message = message.replace(value, HIDDEN)
    return message


class SafeCommandParser(CommandParser):
    """Django's parser, but its errors count unexpected arguments instead of quoting them."""

    given: tuple[str, ...] = ()

    def parse_args(self, args=None, namespace=None):
        self.given = tuple(sys.argv[1:] if args is None else (str(arg) for arg in args))
        if self.missing_args_message and not (args or any(not arg.startswith("-") for arg in args)):
            self.error(self.missing_args_message)
        options, extra = self.parse_known_args(args, namespace)
        if extra:
            if len(extra) == 1:
                said = "1 unexpected argument was given and is not shown, in case it is"
            else:
                said = (
                    f"{len(extra)} unexpected arguments were given and are not shown, "
                    "in case one is"
                )
            self.error(f"{said} a routing key ({NO_KEY_ARGUMENTS}).")
        return options

    def error(self, message):
        # Other refusals (an invalid number or choice) quote the value: hide it if key-shaped.
        super().error(hide_keys(message, self.given))


class _QuietInfo(logging.Filter):
    """Let warnings, errors and audit records through; a command's result says the rest."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name.startswith(AUDIT_LOGGERS)


class ProductCommand(BaseCommand):
    """A one-shot command: its result on stdout, only warnings and audit records logged."""

    # A long-running service logs as configured (its log lines are its record).
    quiet_info_logs = True

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Django builds its own parser class; switching the class keeps everything it set up.
        parser.__class__ = SafeCommandParser
        return parser

    def execute(self, *args, **options):
        quiet = self.quiet_info_logs and options.get("verbosity", 1) < 2
        # An operator who sets LOG_LEVEL asked for those lines.
        handlers = _console_handlers() if quiet and not os.environ.get("LOG_LEVEL") else []
        quiet_filter = _QuietInfo()
        for handler in handlers:
            handler.addFilter(quiet_filter)
        try:
            return super().execute(*args, **options)
        except CommandError as error:
            # A value given in the wrong place (a key as the destination's name) is not echoed.
            hidden = hide_keys(str(error), [*args, *options.values()])
            if hidden == str(error):
                raise
            raise CommandError(hidden, returncode=error.returncode) from None
        finally:
            for handler in handlers:
                handler.removeFilter(quiet_filter)


class ServiceCommand(ProductCommand):
    """A long-running command (the delivery worker), whose info log lines are its record."""

    quiet_info_logs = False


def _console_handlers() -> list[logging.Handler]:
    """The handlers of settings.LOGGING that write to the terminal."""
    return [handler for handler in logging.getLogger().handlers if handler.name == "console"]
