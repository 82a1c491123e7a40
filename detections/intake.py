"""The detection-run body, declared once as a schema: strict JSON, refused field by field."""

import difflib
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from django.core.exceptions import ValidationError as DjangoValidationError
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

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

MOMENT_EXAMPLE = "e.g. 2024-05-01T12:00:00Z"
UUID_EXAMPLE = "e.g. 1b4e28ba-2fa1-11d2-883f-0016d3cca427"
LINK_EXAMPLE = "e.g. https://siem.example.com/replay/123"

_URL_VALIDATOR = ReplayLinkValidator()

# The README's example body, shown in the API's docs.
EXAMPLE_BODY = {
    "detection_name": "Suspicious Login Attempts",
    "run_id": "2026-11-26T12:00Z-logins",
    "run_type": "SCHEDULED",
    "match_count": 42,
    "ran_at": "2026-11-26T12:00:00Z",
    "range_start": "2026-11-26T11:00:00Z",
    "range_end": "2026-11-26T12:00:00Z",
    "replay_link": "https://app.example.com/replay/123",
}


class InvalidRunBody(Exception):
    """The body was refused; `errors` maps each field (or "body") to its messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))


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
    return RunBody.model_validate(data).fields()


# Checks the schema's types cannot say; each raises one sentence, which is the answer's message.


def _refused(message: str) -> PydanticCustomError:
    # The message is final: no context, so pydantic does not read braces in it as placeholders.
    return PydanticCustomError("run_body", message)


def _not_blank(value: object) -> object:
    # Checked before the length, as engines read it: a blank value is blank, however long.
    if isinstance(value, str) and value and not value.strip():
        raise _refused("It must not be blank.")
    return value


def _storable(value: str | list) -> str | list:
    problem = strict_json.unstorable(value, max_depth=MAX_ERRORS_DEPTH)
    if problem is not None:
        raise _refused(_UNSTORABLE[problem])
    return value


def _uuid(value: object) -> uuid.UUID:
    """A UUID in any form Python reads (hyphens, braces, urn:uuid:), as a UUID."""
    if not isinstance(value, str):
        raise _refused(f"It must be a UUID string; got {_json_type(value)}.")
    try:
        return uuid.UUID(value)
    except ValueError:
        raise _refused(f"{_echo(value)} is not a UUID ({UUID_EXAMPLE}).") from None


def _moment(value: object) -> datetime:
    """An ISO 8601 date-time string with an offset, as an aware UTC moment."""
    # Read by Python's own ISO 8601 parser rather than coerced: an epoch number or a bare digit
    # string is not a moment an engine meant.
    if not isinstance(value, str):
        raise _refused(f"It must be an ISO 8601 date-time string ({MOMENT_EXAMPLE}).")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _refused(f"{_echo(value)} is not an ISO 8601 date-time ({MOMENT_EXAMPLE}).") from None
    if moment.utcoffset() is None:
        raise _refused(
            f"{_echo(value)} has no UTC offset, so the moment is ambiguous; "
            f"end it with Z or an offset such as +02:00 ({MOMENT_EXAMPLE})."
        )
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise _refused(f"{_echo(value)} is out of range once converted to UTC.") from None


def _http_link(value: str) -> str:
    if value:
        try:
            _URL_VALIDATOR(value)
        except (DjangoValidationError, ValueError):
            raise _refused(
                f"{_echo(value)} is not an absolute http(s) URL ({LINK_EXAMPLE})."
            ) from None
    return value


# The field types: JSON Schema types and limits pydantic checks, then the checks above.
Text = Annotated[
    str,
    Field(min_length=1, max_length=MAX_TEXT_LENGTH),
    BeforeValidator(_not_blank),
    AfterValidator(_storable),
]
# Engines often send "" for "none"; that is absent, not blank.
OptionalText = Annotated[
    str, Field(max_length=MAX_TEXT_LENGTH), BeforeValidator(_not_blank), AfterValidator(_storable)
]
DetectionId = Annotated[uuid.UUID, BeforeValidator(_uuid)]
Moment = Annotated[AwareDatetime, BeforeValidator(_moment)]
ReplayLink = Annotated[
    str,
    Field(max_length=REPLAY_LINK_MAX_LENGTH),
    BeforeValidator(_not_blank),
    AfterValidator(_storable),
    AfterValidator(_http_link),
]
ErrorList = Annotated[list[str | dict[str, Any]], AfterValidator(_storable)]

RUN_TYPES = tuple(RunType.values)
EXHAUSTIVENESS = tuple(MatchExhaustiveness.values)


class RunBody(BaseModel):
    """The body of POST /api/v1/detection-runs."""

    model_config = ConfigDict(
        title="DetectionRun",
        strict=True,  # a JSON string is not a number, nor true a count
        extra="forbid",  # an unknown field is named, with the known one it resembles
        json_schema_extra={
            "description": (
                "One run of a detection, as the engine reports it. Name the detection by exactly "
                "one of detection_id or detection_name (both, or neither, is refused). A run_id "
                "already recorded is answered 200 with the stored run; nothing new is created. "
                "Unknown fields are refused by name."
            ),
            "examples": [EXAMPLE_BODY],
        },
    )

    detection_id: Annotated[
        DetectionId | None, Field(description="The detection's id; give this or detection_name.")
    ] = None
    detection_name: Annotated[
        Text | None, Field(description="The detection's name; give this or detection_id.")
    ] = None
    run_id: Annotated[Text, Field(description="The engine's id of this run: the idempotency key.")]
    run_type: Literal[*RUN_TYPES]
    match_count: Annotated[
        int, Field(ge=0, le=MAX_COUNT, description="How many matches the search found.")
    ]
    ran_at: Annotated[Moment, Field(description="When the search ran, with a UTC offset.")]
    range_start: Annotated[Moment, Field(description="The searched range's start.")]
    range_end: Annotated[
        Moment, Field(description="The searched range's end: not before range_start.")
    ]
    match_exhaustiveness: Annotated[
        Literal[*EXHAUSTIVENESS, ""] | None,
        Field(description='Whether the search looked at everything; "" means not said.'),
    ] = None
    search_id: Annotated[OptionalText | None, Field(description='"" means none.')] = None
    trace_id: Annotated[OptionalText | None, Field(description='"" means none.')] = None
    errors: Annotated[
        ErrorList | None,
        Field(
            description=(
                "What went wrong, as strings or objects. Any number of any size is accepted "
                f"within the body; the run keeps the first {MAX_STORED_ERRORS}, each cut to "
                f"{MAX_STORED_ERROR_LENGTH} characters, and the total. A run with errors is an "
                f"ERROR run. Nested at most {MAX_ERRORS_DEPTH} levels; no NUL character."
            )
        ),
    ] = None
    replay_link: Annotated[
        ReplayLink | None,
        Field(description='An absolute http(s) URL where the run can be replayed; "" means none.'),
    ] = None

    @field_validator("range_end")
    @classmethod
    def _range_in_order(cls, end: datetime, info: ValidationInfo) -> datetime:
        # info.data holds range_start only when it was valid; an invalid one is refused by name.
        start = info.data.get("range_start")
        if start is not None and start > end:
            raise _refused("It must not be before range_start.")
        return end

    @model_validator(mode="wrap")
    @classmethod
    def _every_refusal_at_once(cls, data: Any, handler):
        """The model, or InvalidRunBody naming every refused field at once, in the API's words."""
        # Raised as InvalidRunBody rather than a pydantic error: an unknown field's name is
        # repeated back as sent, and pydantic cannot carry one holding a lone surrogate.
        if not isinstance(data, dict):
            problem = f"The body must be a JSON object; got {_json_type(data)}."
            raise InvalidRunBody({"body": [problem]})
        # Unknown fields are named here, with the known one they resemble (and not handed on,
        # so that every known field is still checked).
        unknown = [name for name in data if name not in cls.model_fields]
        known = {name: value for name, value in data.items() if name in cls.model_fields}
        try:
            body, errors = handler(known), []
        except ValidationError as error:
            body, errors = None, error.errors(include_url=False)
        refusal = _refusal_of(errors, data, unknown)
        if refusal:
            raise InvalidRunBody(refusal)
        return body

    def fields(self) -> RunFields:
        """The values the service stores: "" for absent text, errors bounded and counted."""
        errors = self.errors or []
        return RunFields(
            detection_id=self.detection_id,
            detection_name=self.detection_name,
            run_id=self.run_id,
            run_type=self.run_type,
            match_count=self.match_count,
            ran_at=self.ran_at,
            range_start=self.range_start,
            range_end=self.range_end,
            match_exhaustiveness=self.match_exhaustiveness or "",
            search_id=self.search_id or "",
            trace_id=self.trace_id or "",
            errors=_bounded_errors(errors),
            errors_total=len(errors),
            replay_link=self.replay_link or "",
        )


REQUIRED_FIELDS = tuple(name for name, field in RunBody.model_fields.items() if field.is_required())
OPTIONAL_FIELDS = tuple(name for name in RunBody.model_fields if name not in REQUIRED_FIELDS)
KNOWN_FIELDS = REQUIRED_FIELDS + OPTIONAL_FIELDS
_CHOICES = {"run_type": RUN_TYPES, "match_exhaustiveness": EXHAUSTIVENESS}
# Text fields read as one of their choices.
_PARSED_TEXT = dict.fromkeys(_CHOICES, "literal_error")


def _declared_max_lengths() -> dict[str, int]:
    """Each text field's maxLength, as the schema declares it."""
    lengths = {}
    for name, declared in RunBody.model_json_schema()["properties"].items():
        for option in declared.get("anyOf", [declared]):
            if "maxLength" in option:
                lengths[name] = option["maxLength"]
    return lengths


_MAX_LENGTHS = _declared_max_lengths()


def _refusal_of(errors: list, data: dict, unknown: list) -> dict[str, list[str]]:
    """Pydantic's errors in the API's words: one message a field, then detection, then unknowns."""
    refusal: dict[str, list[str]] = {}
    for error in errors:
        field = str(error["loc"][0])
        if field not in refusal:  # the first problem of a field is the one to fix
            refusal[field] = [_message(field, error, data)]

    has_id, has_name = data.get("detection_id") is not None, data.get("detection_name") is not None
    if not has_id and not has_name:
        refusal["detection"] = ["Give detection_id or detection_name."]
    elif has_id and has_name:
        # Refused rather than guessing which one wins when they name different detections.
        refusal["detection"] = ["Give detection_id or detection_name, not both."]

    for name in unknown[:MAX_UNKNOWN_REPORTED]:
        refusal.setdefault(_shorten(str(name)), []).append(_unknown_field_message(str(name)))
    if len(unknown) > MAX_UNKNOWN_REPORTED:
        refusal.setdefault("body", []).append(
            f"{len(unknown) - MAX_UNKNOWN_REPORTED} more unknown fields are not listed."
        )
    return refusal


def _message(field: str, error: dict, data: dict) -> str:
    """One field's refusal, from pydantic's error type, in the words engines already read."""
    kind, value = error["type"], data.get(field)
    if kind == "missing":
        return "This field is required."
    if value is None:  # only a required field refuses null; an optional one reads it as absent
        return "It may not be null."
    if kind == "string_unicode":
        # A lone surrogate stops pydantic before the field's own checks; answer as they would.
        too_long = field in _MAX_LENGTHS and len(value) > _MAX_LENGTHS[field]
        kind = "string_too_long" if too_long else _PARSED_TEXT.get(field, kind)
    if kind == "run_body":  # one of this module's own checks, already in words
        return error["msg"]
    if field == "errors" and len(error["loc"]) > 1:
        index = error["loc"][1]
        return (
            f"Item {index} is {_json_type(value[index])}; "
            "each error must be a string or a JSON object."
        )
    if kind == "string_type":
        return f"It must be a string; got {_json_type(value)}."
    if kind == "string_too_short":
        return "It must not be blank."
    if kind == "string_too_long":
        return f"It must be at most {_MAX_LENGTHS[field]} characters; got {len(value)}."
    if kind == "string_unicode":
        return _UNSTORABLE["surrogate"]
    if kind == "literal_error":
        return f"It must be one of {', '.join(_CHOICES[field])}; got {_echo(value)}."
    if kind == "int_type":
        return f"It must be a whole number (a JSON integer); got {_json_type(value)}."
    if kind == "greater_than_equal":
        return f"It must be 0 or more; got {value}."
    if kind == "less_than_equal":
        return f"It must be at most {error['ctx']['le']}."
    if kind == "list_type":
        return f"It must be a list of strings or JSON objects; got {_json_type(value)}."
    return f"It is not valid: {error['msg']}."


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


# Text that the databases cannot store (see strict_json.unstorable), in this body's words.
_UNSTORABLE = {
    "nul": "It contains a NUL character (\\u0000), which cannot be stored.",
    "surrogate": "It contains a lone UTF-16 surrogate, which is not valid Unicode.",
    "too_deep": f"It is nested more than {MAX_ERRORS_DEPTH} levels deep.",
}


# Message helpers.


def _unknown_field_message(name: str) -> str:
    # Only a name of plausible length can be a typo of a known one; comparing is not free.
    short = len(name) <= ECHO_LENGTH
    suggestion = difflib.get_close_matches(name, KNOWN_FIELDS, n=1) if short else []
    hint = f" Did you mean {suggestion[0]}?" if suggestion else ""
    return f"Unknown field.{hint} Known fields: {', '.join(KNOWN_FIELDS)}."


# Like destinations.forms._json_kind, in the words an API message uses (see the note there).
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
