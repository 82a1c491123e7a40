"""Validate an Events API v2 event as PagerDuty does: its own schema plus its stated limits."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator, FormatChecker, ValidationError

SCHEMA_PATH = Path(__file__).with_name("events-v2-openapiv3.json")

# Limits PagerDuty documents in prose but the schema does not state (see SOURCE.md).
ROUTING_KEY_LENGTH = 32
SUMMARY_MAX_LENGTH = 1024
DEDUP_KEY_MAX_LENGTH = 255
EVENT_MAX_BYTES = 512_000

_ROUTING_KEY_CHARACTERS = re.compile(r"[A-Za-z0-9]+", re.ASCII)
# RFC 3339 section 5.6: a full date, "T", a full time with a mandatory "Z" or "+hh:mm" offset.
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_REPR_MAX_LENGTH = 60
_ARTICLES = {"object": "an object", "array": "an array", "string": "a string"}


def _is_absolute_http_url(value: object) -> bool:
    """Tell whether a value is an absolute http(s) URL; non-strings are left to the type check."""
    if not isinstance(value, str):
        return True
    if any(character.isspace() for character in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_rfc3339(value: object) -> bool:
    """Tell whether a value is an RFC 3339 date-time; non-strings are left to the type check."""
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    # The pattern accepts 2015-13-45; parsing rejects impossible dates, hours and offsets.
    normalized = value.upper().replace("Z", "+00:00")
    try:
        datetime.fromisoformat(normalized)
    except ValueError:
        return False
    return True


# Our own checkers only: the library's "date-time" check silently passes when an optional
# dependency is missing, and "url" is not a JSON Schema format at all, so it would be ignored.
_FORMAT_CHECKER = FormatChecker(formats=())
_FORMAT_CHECKER.checks("url")(_is_absolute_http_url)
_FORMAT_CHECKER.checks("date-time")(_is_rfc3339)
_FORMAT_PROBLEMS = {
    "url": "must be an absolute http or https URL",
    "date-time": "must be an RFC 3339 date-time such as 2015-07-17T08:42:58.315+00:00",
}


def _request_schema(document: dict[str, Any]) -> dict[str, Any]:
    """Build the /enqueue request-body schema, with the fixes for the file's known defects."""
    schema = copy.deepcopy(
        document["paths"]["/enqueue"]["post"]["requestBody"]["content"]["application/json"][
            "schema"
        ]
    )
    # The body's "#/components/..." refs point at the document root; carrying the components
    # along makes them resolve against this schema as its own root.
    schema["components"] = copy.deepcopy(document["components"])
    # Payload requires summary/severity/source, which only fits triggers: resolve and
    # acknowledge carry no payload, and PagerDuty ignores one if it is sent.
    payload_schema = schema["properties"]["payload"]
    schema["properties"]["payload"] = {"type": "object"}
    schema["allOf"] = [
        {
            "if": {
                "properties": {"event_action": {"const": "trigger"}},
                "required": ["event_action"],
            },
            "then": {"properties": {"payload": payload_schema}, "required": ["payload"]},
        },
        {
            "if": {
                "properties": {"event_action": {"enum": ["acknowledge", "resolve"]}},
                "required": ["event_action"],
            },
            "then": {"required": ["dedup_key"]},
        },
    ]
    return schema


_DOCUMENT = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
REQUEST_SCHEMA = _request_schema(_DOCUMENT)
Draft7Validator.check_schema(REQUEST_SCHEMA)
_VALIDATOR = Draft7Validator(REQUEST_SCHEMA, format_checker=_FORMAT_CHECKER)


def _dotted(path: Iterable[str | int]) -> str:
    """Spell an instance path the way a reader would write it, e.g. links[0].href."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _short(value: object) -> str:
    """Show a value in JSON, cut short so a huge field cannot flood the answer."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= _REPR_MAX_LENGTH else text[: _REPR_MAX_LENGTH - 1] + "…"


def _describe(error: ValidationError, event: dict[str, Any]) -> list[str]:
    """Turn one schema error into sentences that never echo the routing key."""
    path = list(error.absolute_path)
    where = _dotted(path)
    # Only the routing key's own errors could quote it, so they name the rule, never the value.
    about_key = bool(path) and path[0] == "routing_key"
    if error.validator == "required":
        instance = error.instance if isinstance(error.instance, dict) else {}
        problems = []
        for name in error.validator_value:
            if name in instance:
                continue
            field = f"{where}.{name}" if where else name
            action = event.get("event_action")
            if field == "payload" or (field == "dedup_key" and isinstance(action, str)):
                problems.append(f"{field} is required for {action} events")
            else:
                problems.append(f"{field} is required")
        return problems
    subject = where or "event"
    if error.validator == "type":
        expected = str(error.validator_value)
        return [f"{subject} must be {_ARTICLES.get(expected, expected)}"]
    if error.validator == "enum":
        choices = ", ".join(str(choice) for choice in error.validator_value)
        got = "" if about_key else f"; got {_short(error.instance)}"
        return [f"{subject} must be one of {choices}{got}"]
    if error.validator == "format":
        rule = _FORMAT_PROBLEMS.get(error.validator_value, f"must be a {error.validator_value}")
        got = "" if about_key else f"; got {_short(error.instance)}"
        return [f"{subject} {rule}{got}"]
    if about_key:
        return [f"routing_key is invalid ({error.validator})"]
    return [f"{subject}: {error.message}"]


def _limit_problems(event: dict[str, Any]) -> list[str]:
    """Check the limits the schema leaves out; fields of the wrong type are already reported."""
    problems = []
    routing_key = event.get("routing_key")
    if isinstance(routing_key, str):
        if len(routing_key) != ROUTING_KEY_LENGTH:
            problems.append(
                f"routing_key must be {ROUTING_KEY_LENGTH} characters; got {len(routing_key)}"
            )
        elif not _ROUTING_KEY_CHARACTERS.fullmatch(routing_key):
            problems.append("routing_key must contain only letters A-Z, a-z and digits 0-9")
    action = event.get("event_action")
    dedup_key = event.get("dedup_key")
    if isinstance(dedup_key, str):
        if len(dedup_key) > DEDUP_KEY_MAX_LENGTH:
            problems.append(
                f"dedup_key must be at most {DEDUP_KEY_MAX_LENGTH} characters; got {len(dedup_key)}"
            )
        elif action in ("acknowledge", "resolve") and not dedup_key.strip():
            problems.append(f"dedup_key must not be blank for {action} events")
    payload = event.get("payload")
    if action == "trigger" and isinstance(payload, dict):
        summary = payload.get("summary")
        if isinstance(summary, str):
            if len(summary) > SUMMARY_MAX_LENGTH:
                problems.append(
                    f"payload.summary must be at most {SUMMARY_MAX_LENGTH} characters;"
                    f" got {len(summary)}"
                )
            elif not summary.strip():
                problems.append("payload.summary must not be blank")
        source = payload.get("source")
        if isinstance(source, str) and not source.strip():
            problems.append("payload.source must not be blank")
    return problems


def _measure(event: dict[str, Any]) -> int:
    """Count the bytes of the event as a compact JSON body."""
    return len(json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode())


def validate_event(event: dict[str, Any], *, raw_size: int | None = None) -> list[str]:
    """Return what PagerDuty would refuse in this event, as sentences; an empty list means valid."""
    if not isinstance(event, dict):
        return ["event must be a JSON object"]
    problems: list[str] = []
    for error in _VALIDATOR.iter_errors(event):
        problems.extend(_describe(error, event))
    problems.extend(_limit_problems(event))
    size = _measure(event) if raw_size is None else raw_size
    if size > EVENT_MAX_BYTES:
        problems.append(f"event must be at most {EVENT_MAX_BYTES:,} bytes; got {size:,}")
    routing_key = event.get("routing_key")
    unique = list(dict.fromkeys(problems))
    # A safety net on top of the wording above: a key long enough to be one is never echoed.
    if isinstance(routing_key, str) and len(routing_key) >= 8:
        unique = [problem.replace(routing_key, "<routing_key>") for problem in unique]
    return unique
