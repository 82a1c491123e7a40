"""The configuration file's vocabulary: one entry per destination option and detection value.

A destination option is written `{"value": …}` under its file name; a detection's values are
written plainly. Each entry says which model (and form) field it is and what kind of value it
holds; reading, exporting, defaults and comparison all follow from that, so a new field is one line.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from django.db import models

from detections.models import Detection

from ..models import Destination

type Reference = Literal["", "one", "many"]


@dataclass(frozen=True, kw_only=True)
class ValueKind:
    """How one sort of value is checked in the file, handed to the form and read back."""

    expected: str  # completes "must be …" when the file's value is of another type
    accepts: Callable[[Any], bool]
    # The form's data for a file value (references get the destinations' ids from the caller).
    to_form: Callable[[Any], Any] = lambda value: value
    # The file's value for a model's stored value.
    read: Callable[[models.Model, str], Any] = getattr
    # "one": a destination's name (a foreign key); "many": a list of names (many-to-many).
    reference: Reference = ""


def _json_text(value: Any) -> str:
    # The form checks text (syntax, object, reserved names, size, depth, NaN); a dict given to it
    # directly would skip those checks. YAML reads an unquoted 2026-01-01 as a date: it is
    # passed on as the text that was written.
    return json.dumps(value, ensure_ascii=True, allow_nan=True, default=str)


def _read_name(instance: models.Model, field: str) -> str | None:
    related = getattr(instance, field)
    return None if related is None else related.name


def _read_names(instance: models.Model, field: str) -> list[str]:
    return sorted(related.name for related in getattr(instance, field).all())


def _is_names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(name, str) for name in value)


TEXT = ValueKind(expected="text", accepts=lambda value: isinstance(value, str))
FLAG = ValueKind(expected="true or false", accepts=lambda value: isinstance(value, bool))
WHOLE_NUMBER = ValueKind(
    expected="a whole number",
    accepts=lambda value: isinstance(value, int) and not isinstance(value, bool),
)
# Any value reaches the form, whose messages say what is wrong ("must be a JSON object").
JSON_OBJECT = ValueKind(expected="a JSON object", accepts=lambda value: True, to_form=_json_text)
DESTINATION_NAME = ValueKind(
    expected="a destination's name",
    accepts=lambda value: isinstance(value, str),
    read=_read_name,
    reference="one",
)
DESTINATION_NAMES = ValueKind(
    expected="a list of destination names", accepts=_is_names, read=_read_names, reference="many"
)


@dataclass(frozen=True, kw_only=True)
class Option:
    """One value of a record: its name in the file, its model and form field, its kind."""

    name: str
    field: str
    kind: ValueKind
    model: type[models.Model]

    def default(self) -> Any:
        """The file's value when the option is left out (or null): the model field's default."""
        field = self.model._meta.get_field(self.field)
        if self.kind.reference == "many":
            return []
        if self.kind.reference == "one":
            return None
        return field.get_default()

    def read(self, instance: models.Model) -> Any:
        """The stored value as the file writes it."""
        return self.kind.read(instance, self.field)


def _destination(name: str, field: str, kind: ValueKind) -> Option:
    return Option(name=name, field=field, kind=kind, model=Destination)


def _detection(name: str, kind: ValueKind) -> Option:
    return Option(name=name, field=name, kind=kind, model=Detection)


# In the seed's order first, then ours. The routing key is not here: it is a secret, written
# only as {"is_secret": true} (see document.py).
DESTINATION_OPTIONS: tuple[Option, ...] = (
    _destination("severity", "severity_override", TEXT),
    _destination("component", "component", TEXT),
    _destination("group", "group", TEXT),
    _destination("class", "event_class", TEXT),
    _destination("custom_details", "custom_details", JSON_OBJECT),
    _destination("timeout", "timeout_seconds", WHOLE_NUMBER),
    _destination("region", "region", TEXT),
    _destination("enabled", "enabled", FLAG),
    _destination("minimum_severity", "minimum_severity", TEXT),
    _destination("all_detections", "all_detections", FLAG),
    _destination("auto_resolve", "auto_resolve", FLAG),
    _destination("fallback", "fallback", DESTINATION_NAME),
    _destination("summary_template", "summary_template", TEXT),
)

DETECTION_VALUES: tuple[Option, ...] = (
    _detection("description", TEXT),
    _detection("severity", TEXT),
    _detection("match_operator", TEXT),
    _detection("match_threshold", WHOLE_NUMBER),
    _detection("match_eagerness", TEXT),
    _detection("enabled", FLAG),
    _detection("destinations", DESTINATION_NAMES),
)

ROUTING_KEY_OPTION = "routing_key"
