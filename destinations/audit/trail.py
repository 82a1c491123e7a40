"""A record's audit trail as an admin reads it: who, when, how, and old → new per field."""

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.db import models

from .records import CHANGED, CREATED, DELETED, REENCRYPTED

# Bookkeeping that changes with every save, or that the key's line tells better.
_NOT_SHOWN = frozenset({"id", "created_at", "updated_at", "routing_key_rotated_at"})
# A long value (custom details, a description) is cut in the trail, never in the record.
SHOWN_VALUE_MAX_LENGTH = 200
BLANK = "(blank)"
_ACTIONS = {CREATED: "created", CHANGED: "changed", DELETED: "deleted"}


@dataclass(frozen=True)
class TrailEntry:
    """One change: when, by which account (if any), through what, and what it changed."""

    when: datetime
    who: str
    via: str
    action: str
    lines: tuple[str, ...]


def audit_trail(model: type[models.Model], pk, *, limit: int | None = None) -> list[TrailEntry]:
    """The changes of one record, newest first (deleted records keep theirs)."""
    records = list(
        model.history.filter(**{model._meta.pk.attname: pk})
        .select_related("history_user")
        .order_by("history_date", "history_id")
    )
    entries = []
    previous = None
    for record in records:
        entries.append(trail_entry(record, previous))
        previous = record
    entries.reverse()
    return entries[:limit] if limit is not None else entries


def trail_entry(record, previous=None) -> TrailEntry:
    """What one history record says, compared with the one before it (None: the first)."""
    user = record.history_user
    return TrailEntry(
        when=record.history_date,
        who=user.get_username() if user is not None else "—",
        via=record.history_change_reason or "—",
        action=_ACTIONS.get(record.history_type, record.history_type),
        lines=tuple(change_lines(record, previous)),
    )


def change_lines(record, previous=None) -> list[str]:
    """Lines like "severity override: warning → critical" and "key changed (••••C5d6)"."""
    if record.history_type == DELETED:
        return []
    lines = []
    key_line = _key_line(record)
    if key_line:
        lines.append(key_line)
    for field in _shown_fields(record):
        new = _value(record, field)
        if previous is None or previous.history_type == DELETED:
            if record.history_type != CREATED or new == _default(field):
                continue
            lines.append(f"{field.verbose_name}: {_shown(field, new)}")
            continue
        old = _value(previous, field)
        if old != new:
            lines.append(f"{field.verbose_name}: {_shown(field, old)} → {_shown(field, new)}")
    return lines


def _key_line(record) -> str:
    """The routing key's part of the change: only ever its masked form."""
    change = getattr(record, "key_change", "")
    if not change:
        return ""
    if change == REENCRYPTED:
        return "key re-encrypted under the first encryption key (the key itself is unchanged)"
    if record.history_type == CREATED:
        return f"key set ({change})"
    return f"key changed ({change})"


def _shown_fields(record) -> list[models.Field]:
    """The original model's fields the trail compares, in the model's order."""
    original = record.instance_type._meta
    tracked = {field.name for field in record.tracked_fields}
    fields = [
        field
        for field in original.get_fields()
        if field.name in tracked and field.name not in _NOT_SHOWN and field.concrete
    ]
    m2m = [field for field in record._history_m2m_fields]
    return [field for field in fields if not field.many_to_many] + m2m


def _value(record, field: models.Field):
    """The field's value in a history record: many-to-many choices as a set of ids."""
    if field.many_to_many:
        through_field = field.m2m_reverse_field_name()
        return frozenset(getattr(record, field.name).values_list(f"{through_field}_id", flat=True))
    return getattr(record, field.attname)


def _default(field: models.Field):
    if field.many_to_many:
        return frozenset()
    return field.get_default()


def _shown(field: models.Field, value) -> str:
    """A value as the trail shows it: choices by value, references by name, long text cut."""
    if field.many_to_many or field.is_relation:
        ids = sorted(value) if field.many_to_many else ([] if value is None else [value])
        names = _names(field.related_model, ids)
        return ", ".join(sorted(names)) if names else "(none)"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or value == "":
        if field.choices:
            label = dict(field.flatchoices).get(value or "")
            if label:
                return str(label).lower()
        return BLANK
    text = (
        json.dumps(value, ensure_ascii=False, sort_keys=True)
        if isinstance(value, dict | list)
        else str(value)
    )
    if len(text) > SHOWN_VALUE_MAX_LENGTH:
        text = text[: SHOWN_VALUE_MAX_LENGTH - 1] + "…"
    return text


def _names(model: type[models.Model], ids: Sequence) -> list[str]:
    """The records' names; a deleted one by its last name in its own trail, marked deleted."""
    found = dict(model._default_manager.filter(pk__in=ids).values_list("pk", "name"))
    missing = [pk for pk in ids if pk not in found]
    if missing and hasattr(model, "history"):
        last_names = _last_names(model, missing)
        found.update({pk: f"{name} (deleted)" for pk, name in last_names.items()})
    return [found.get(pk, f"#{pk} (deleted)") for pk in ids]


def _last_names(model: type[models.Model], ids: Iterable) -> dict:
    rows = (
        model.history.filter(**{f"{model._meta.pk.attname}__in": list(ids)})
        .order_by("history_date", "history_id")
        .values_list(model._meta.pk.attname, "name")
    )
    return dict(rows)  # later rows overwrite earlier ones: the last name wins
