"""Checking a detection-run body field by field, before anything is looked up or stored."""

import difflib
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import ValidationError

from destinations.pagerduty.events import REPLAY_LINK_MAX_LENGTH
from project import strict_json

from .models import MAX_COUNT, MatchExhaustiveness, ReplayLinkValidator, RunType

# A run outcome is a few KB; a megabyte leaves room for long error lists and stops abuse early.
MAX_BODY_BYTES = 1024 * 1024
# The model's text columns (run_id, search_id, trace_id, detection name) are 255 characters.
MAX_TEXT_LENGTH = 255
# Any number of errors of any size is accepted within the body; what is stored is bounded so a
# run stays quick to show in the admin and to page with (an event sends only the first 10): the
# first MAX_STORED_ERRORS, each at most MAX_STORED_ERROR_LENGTH characters, and the total count.
MAX_STORED_ERRORS = 100
MAX_STORED_ERROR_LENGTH = 16 * 1024
# Deeper structures are refused: they are never a real engine's error report, and each level
# costs recursion when the list is stored and when an event is built from it.
MAX_ERRORS_DEPTH = 32
# How much of a refused value or field name is repeated back, and how many unknown fields.
ECHO_LENGTH = 60
MAX_UNKNOWN_REPORTED = 20

REQUIRED_FIELDS = ("run_id", "run_type", "match_count", "ran_at", "range_start", "range_end")
OPTIONAL_FIELDS = (
    "detection_id",
    "detection_name",
    "match_exhaustiveness",
    "search_id",
    "trace_id",
    "errors",
    "replay_link",
)
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS

_URL_VALIDATOR = ReplayLinkValidator()


class InvalidRunBody(ValueError):
    """The body was refused; `errors` maps each field (or "body") to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))


class _FieldError(ValueError):
    """One field's value was refused with this message."""


@dataclass(frozen=True, kw_only=True)
class RunFields:
    """A valid body's values, cleaned: aware UTC moments, "" for absent optional text."""

    detection_id: uuid.UUID | None
    detection_name: str | None
    run_id: str
    run_type: str
    match_count: int
    ran_at: datetime
    range_start: datetime
    range_end: datetime
    match_exhaustiveness: str
    search_id: str
    trace_id: str
    errors: list  # the first MAX_STORED_ERRORS, each bounded (see _bounded_error)
    errors_total: int  # how many errors the engine sent, stored or not
    replay_link: str


def parse_body(raw: bytes) -> Any:
    """Decode strict UTF-8 JSON: no NaN or Infinity, no duplicate keys; InvalidRunBody if not."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRunBody({"body": ["The body is not UTF-8 text; send UTF-8 JSON."]}) from None
    if not text.strip():
        raise InvalidRunBody({"body": ["The body is empty; send a JSON object."]})
    try:
        return strict_json.loads(text, echo_length=ECHO_LENGTH, refuse_duplicate_keys=True)
    except json.JSONDecodeError as error:
        message = (
            f"The body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}."
        )
    except RecursionError:
        message = "The body's JSON is nested too deeply."
    except ValueError as error:  # raised by strict_json's hooks, each with one sentence
        message = f"The body is not acceptable JSON: {error}"
    raise InvalidRunBody({"body": [message]})


def validate_run_body(data: object) -> RunFields:
    """Return the body's cleaned fields, or raise InvalidRunBody naming every refused field."""
    if not isinstance(data, dict):
        raise InvalidRunBody({"body": [f"The body must be a JSON object; got {_json_type(data)}."]})
    errors: dict[str, list[str]] = {}
    cleaned: dict[str, Any] = {}
    for name, clean in _CLEANERS.items():
        value = data.get(name)
        if value is None:
            if name in REQUIRED_FIELDS:
                absent = "This field is required." if name not in data else "It may not be null."
                errors[name] = [absent]
            else:
                cleaned[name] = None
            continue
        try:
            cleaned[name] = clean(value)
        except _FieldError as error:
            errors[name] = [str(error)]

    has_id, has_name = data.get("detection_id") is not None, data.get("detection_name") is not None
    if not has_id and not has_name:
        errors["detection"] = ["Give detection_id or detection_name."]
    elif has_id and has_name:
        # Refused rather than guessing which one wins when they name different detections.
        errors["detection"] = ["Give detection_id or detection_name, not both."]

    start, end = cleaned.get("range_start"), cleaned.get("range_end")
    if start is not None and end is not None and start > end:
        errors.setdefault("range_end", []).append("It must not be before range_start.")

    unknown = [name for name in data if name not in _CLEANERS]
    for name in unknown[:MAX_UNKNOWN_REPORTED]:
        errors.setdefault(_shorten(str(name)), []).append(_unknown_field_message(str(name)))
    if len(unknown) > MAX_UNKNOWN_REPORTED:
        errors.setdefault("body", []).append(
            f"{len(unknown) - MAX_UNKNOWN_REPORTED} more unknown fields are not listed."
        )

    if errors:
        raise InvalidRunBody(errors)
    return RunFields(
        detection_id=cleaned["detection_id"],
        detection_name=cleaned["detection_name"],
        run_id=cleaned["run_id"],
        run_type=cleaned["run_type"],
        match_count=cleaned["match_count"],
        ran_at=cleaned["ran_at"],
        range_start=start,
        range_end=end,
        match_exhaustiveness=cleaned["match_exhaustiveness"] or "",
        search_id=cleaned["search_id"] or "",
        trace_id=cleaned["trace_id"] or "",
        errors=_bounded_errors(cleaned["errors"] or []),
        errors_total=len(cleaned["errors"] or []),
        replay_link=cleaned["replay_link"] or "",
    )


# Field cleaners: each returns the cleaned value or raises _FieldError with one sentence.


def _text(value: object, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    if not isinstance(value, str):
        raise _FieldError(f"It must be a string; got {_json_type(value)}.")
    if not value.strip():
        raise _FieldError("It must not be blank.")
    if len(value) > max_length:
        raise _FieldError(f"It must be at most {max_length} characters; got {len(value)}.")
    _check_storable(value)
    return value


def _uuid(value: object) -> uuid.UUID:
    if not isinstance(value, str):
        raise _FieldError(f"It must be a UUID string; got {_json_type(value)}.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _FieldError(
            f"{_echo(value)} is not a UUID (e.g. 1b4e28ba-2fa1-11d2-883f-0016d3cca427)."
        ) from None


def _choice(choices: list[str]) -> Callable[[object], str]:
    def clean(value: object) -> str:
        if value not in choices:
            raise _FieldError(f"It must be one of {', '.join(choices)}; got {_echo(value)}.")
        return str(value)

    return clean


def _count(value: object) -> int:
    # bool is an int in Python; true is not a count.
    if isinstance(value, bool) or not isinstance(value, int):
        raise _FieldError(f"It must be a whole number (a JSON integer); got {_json_type(value)}.")
    if value < 0:
        raise _FieldError(f"It must be 0 or more; got {value}.")
    if value > MAX_COUNT:
        raise _FieldError(f"It must be at most {MAX_COUNT}.")
    return value


def _moment(value: object) -> datetime:
    example = "e.g. 2024-05-01T12:00:00Z"
    if not isinstance(value, str):
        raise _FieldError(f"It must be an ISO 8601 date-time string ({example}).")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _FieldError(f"{_echo(value)} is not an ISO 8601 date-time ({example}).") from None
    if moment.utcoffset() is None:
        raise _FieldError(
            f"{_echo(value)} has no UTC offset, so the moment is ambiguous; "
            f"end it with Z or an offset such as +02:00 ({example})."
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _FieldError(f"{_echo(value)} is out of range once converted to UTC.") from None


def _optional_text(value: object) -> str:
    # Engines often send "" for "none"; that is absent, not blank.
    return "" if value == "" else _text(value)


def _optional_choice(choices: list[str]) -> Callable[[object], str]:
    clean_choice = _choice(choices)
    return lambda value: "" if value == "" else clean_choice(value)


def _errors(value: object) -> list:
    if not isinstance(value, list):
        raise _FieldError(f"It must be a list of strings or JSON objects; got {_json_type(value)}.")
    for index, item in enumerate(value):
        if not isinstance(item, str | dict):
            raise _FieldError(
                f"Item {index} is {_json_type(item)}; each error must be a string or a JSON object."
            )
    _check_storable(value)
    return value


def _bounded_errors(errors: list) -> list:
    """The first MAX_STORED_ERRORS errors, each cut to MAX_STORED_ERROR_LENGTH characters."""
    return [_bounded_error(error) for error in errors[:MAX_STORED_ERRORS]]


def _bounded_error(error: str | dict) -> str | dict:
    """The error itself when it is short enough, else its start (an object's JSON text) and …."""
    if isinstance(error, str):
        return _shorten(error, MAX_STORED_ERROR_LENGTH)
    text = json.dumps(error, ensure_ascii=False)
    # An object is kept whole or not at all: half an object is not valid JSON, its text is.
    if len(text) <= MAX_STORED_ERROR_LENGTH:
        return error
    return _shorten(text, MAX_STORED_ERROR_LENGTH)


def _replay_link(value: object) -> str:
    if value == "":
        return ""
    link = _text(value, max_length=REPLAY_LINK_MAX_LENGTH)
    try:
        _URL_VALIDATOR(link)
    except (ValidationError, ValueError):
        raise _FieldError(
            f"{_echo(link)} is not an absolute http(s) URL "
            f"(e.g. https://siem.example.com/replay/123)."
        ) from None
    return link


_CLEANERS: dict[str, Callable[[Any], Any]] = {
    "detection_id": _uuid,
    "detection_name": _text,
    "run_id": _text,
    "run_type": _choice(RunType.values),
    "match_count": _count,
    "ran_at": _moment,
    "range_start": _moment,
    "range_end": _moment,
    "match_exhaustiveness": _optional_choice(MatchExhaustiveness.values),
    "search_id": _optional_text,
    "trace_id": _optional_text,
    "errors": _errors,
    "replay_link": _replay_link,
}


# Text that the databases cannot store (see strict_json.unstorable), in this body's words.
_UNSTORABLE = {
    "nul": "It contains a NUL character (\\u0000), which cannot be stored.",
    "surrogate": "It contains a lone UTF-16 surrogate, which is not valid Unicode.",
    "too_deep": f"It is nested more than {MAX_ERRORS_DEPTH} levels deep.",
}


def _check_storable(value: str | list) -> None:
    problem = strict_json.unstorable(value, max_depth=MAX_ERRORS_DEPTH)
    if problem is not None:
        raise _FieldError(_UNSTORABLE[problem])


# Message helpers.


def _unknown_field_message(name: str) -> str:
    # Only a name of plausible length can be a typo of a known one; comparing is not free.
    short = len(name) <= ECHO_LENGTH
    suggestion = difflib.get_close_matches(name, KNOWN_FIELDS, n=1) if short else []
    hint = f" Did you mean {suggestion[0]}?" if suggestion else ""
    return f"Unknown field.{hint} Known fields: {', '.join(KNOWN_FIELDS)}."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _shorten(text: str, max_length: int = ECHO_LENGTH) -> str:
    return text if len(text) <= max_length else text[: max_length - 1] + "…"


def _echo(value: object) -> str:
    """Quote a refused value for a message, shortened so a huge value is not sent back whole."""
    if isinstance(value, str):
        return json.dumps(_shorten(value))
    if isinstance(value, bool | int | float):
        return _shorten(json.dumps(value))
    return _json_type(value)
