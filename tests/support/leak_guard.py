"""A pytest plugin that fails any test in whose log records a known routing key shows up."""

# Every test runs with a handler on the root logger at DEBUG. A record leaks when its message, its
# formatted exception or stack, or any extra attribute holds a known key or the key's middle (so a
# key with a changed first or last characters is caught too; the masked form shows only the last
# four characters, which is allowed).

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator

import pytest

# Characters cut from each end of a key before matching its middle: the masked form shows the
# last four, and tests derive keys by changing the first two.
_KEPT_OUT = 4
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


def secret_fragments(secrets: set[str]) -> set[str]:
    """Each secret, and its middle when it is long enough that the middle alone identifies it."""
    fragments = set(secrets)
    for secret in secrets:
        if len(secret) >= 4 * _KEPT_OUT:
            fragments.add(secret[_KEPT_OUT:-_KEPT_OUT])
    return fragments


def find_secrets(text: str, secrets: set[str] | None = None) -> list[str]:
    """The known secrets (or their middles) that occur in `text`."""
    fragments = secret_fragments(known_secrets() if secrets is None else secrets)
    return sorted(fragment for fragment in fragments if fragment in text)


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
                f"logged {len(found)} secret fragment(s)"
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
