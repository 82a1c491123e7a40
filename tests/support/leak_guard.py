"""A pytest plugin that fails any test in whose log records a known routing key shows up."""

# Every test runs with a handler on the root logger at DEBUG. A record leaks when its message, its
# formatted exception or stack, or any extra attribute holds a known key in any of the forms an echo
# may give it: in another letter case, JSON-escaped (\u0052), spaced out ("R k 7 …"), or cut
# short. The text is folded first (escapes undone, everything but letters and digits dropped,
# lower-cased) and then searched for any run of _RUN consecutive characters of a key, so a key with
# changed first or last characters is caught too. The masked form shows only the last four
# characters, which is allowed.

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator

import pytest

# A run of this many characters of a key is a leak. The product masks runs of 12 and more
# (destinations.keys.routing.KEY_FRAGMENT_MIN); this guard is written on its own, so that a fault
# in one is not repeated in the other.
_RUN = 12
_SEPARATOR_ESCAPE = re.compile(r"\\[nrt/]")
_ANY_ESCAPE = re.compile(r"\\u([0-9A-Fa-f]{4})")
_NOT_LETTER_OR_DIGIT = re.compile(r"[^A-Za-z0-9]+")
# Attributes every LogRecord has; anything else came from `extra=` and is checked too.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}

_registered: set[str] = set()


def register_secret(secret: str) -> None:
    """Guard one more secret for the rest of the current test (it is forgotten afterwards)."""
    if secret:
        _registered.add(secret)


def known_secrets() -> set[str]:
    """The routing keys of the suite's fixtures and those the current test registered."""
    from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

    return {ROUTING_KEY, OTHER_ROUTING_KEY, *_registered}


def fold(text: str) -> str:
    """The text with escapes undone, only its ASCII letters and digits kept, lower-cased."""
    unescaped = _ANY_ESCAPE.sub(lambda m: chr(int(m[1], 16)), _SEPARATOR_ESCAPE.sub("", text))
    return _NOT_LETTER_OR_DIGIT.sub("", unescaped).lower()


def secret_fragments(secrets: set[str]) -> dict[str, set[str]]:
    """Each secret's runs of _RUN folded characters (the whole of a shorter one), by secret."""
    fragments = {}
    for secret in secrets:
        folded = fold(secret)
        run = min(_RUN, len(folded))
        fragments[secret] = {folded[start : start + run] for start in range(len(folded) - run + 1)}
    return fragments


def find_secrets(text: str, secrets: set[str] | None = None) -> list[str]:
    """The masked names (•••• and the last 4) of the known secrets that occur in `text`."""
    folded = fold(text)
    found = secret_fragments(known_secrets() if secrets is None else secrets)
    return sorted(
        "••••" + secret[-4:]
        for secret, fragments in found.items()
        if any(fragment and fragment in folded for fragment in fragments)
    )


def record_text(record: logging.LogRecord) -> str:
    """Everything a log handler could write out for a record, as one string."""
    try:
        parts = [record.getMessage()]
    except Exception:  # a broken format string still carries its arguments
        parts = [str(record.msg), repr(record.args)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append("".join(traceback.format_exception(record.exc_info[1])))
    if record.exc_text:
        parts.append(record.exc_text)
    if record.stack_info:
        parts.append(record.stack_info)
    parts += [
        f"{name}={value!r}"
        for name, value in vars(record).items()
        if name not in _STANDARD_ATTRIBUTES
    ]
    return "\n".join(parts)


class LeakHandler(logging.Handler):
    """Notes each record that carries a known secret, as it is emitted."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.leaks: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = find_secrets(record_text(record))
        if found:
            self.leaks.append(
                f"{record.name} {record.levelname} at {record.pathname}:{record.lineno} "
                f"logged {len(found)} secret(s): {', '.join(found)}"
            )


@pytest.fixture(autouse=True)
def routing_key_leak_guard() -> Iterator[LeakHandler]:
    """Fail the test if any log record emitted during it holds a known routing key."""
    root = logging.getLogger()
    handler = LeakHandler()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous_level)
        _registered.clear()
    if handler.leaks:
        # The secret itself is not repeated here: the failure report is a log too.
        pytest.fail(
            "A routing key appeared in the logs:\n" + "\n".join(handler.leaks), pytrace=False
        )
