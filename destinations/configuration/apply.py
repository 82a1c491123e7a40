"""Making the database match a file: each record checked by the admin's own form, all in one
transaction, and the plan of what changed (or would change)."""

import re
from pathlib import Path
from typing import Any

from django.db import IntegrityError, transaction
from django.forms import ModelForm
from django.forms.utils import ErrorDict

from detections.forms import DetectionForm
from detections.models import Detection

from ..audit.records import recorded_once, update_recorded
from ..forms import DestinationForm
from ..models import Destination
from .document import ConfigRefused, Document, Entry, read_document
from .options import DESTINATION_OPTIONS, DETECTION_VALUES, ROUTING_KEY_OPTION, Option
from .plan import Action, Change, FieldChange, Plan

MANAGED_BY_MAX_LENGTH = Destination._meta.get_field("managed_by").max_length
NEW_KEY_NEEDED = (
    'a new destination needs its key: {"is_secret": true, "from_env": "NAME"} '
    'or {"is_secret": true, "from_file": "PATH"}.'
)
_PATH_ORDER = re.compile(r"^(?P<section>\w+)\[(?P<index>\d+)\]")

type Errors = list[tuple[str, str]]


def apply_config(
    *,
    data: Any,
    managed_by: str,
    dry_run: bool = False,
    prune: bool = False,
    key_files: bool = True,
    base_dir: Path | None = None,
) -> Plan:
    """Make the database match the parsed file (or only plan it, with dry_run) and say how.

    Raises ConfigRefused with every error found; then nothing has changed. Records the file
    names are marked managed_by; with `prune`, those it does not name are deleted.
    """
    document = read_document(data, key_files=key_files, base_dir=base_dir or Path.cwd())
    label = managed_by[:MANAGED_BY_MAX_LENGTH]
    errors: Errors = list(document.errors)
    try:
        with transaction.atomic():
            destinations = _apply_destinations(document, label=label, prune=prune, errors=errors)
            detections = _apply_detections(document, label=label, prune=prune, errors=errors)
            # Left ones go last: a detection's reference to one is refused by name, above.
            changes = [
                *destinations,
                *_leave_destinations(document, prune=prune),
                *detections,
                *_leave_detections(document, prune=prune),
            ]
            if errors:
                raise ConfigRefused(sorted(errors, key=_path_order))
            if dry_run:
                transaction.set_rollback(True)
    except IntegrityError:
        # Another apply (or an admin) wrote the same names between our reads and writes.
        raise ConfigRefused(
            [("", "the records changed while the file was applied; apply it again.")]
        ) from None
    return Plan(changes=tuple(changes), applied=not dry_run, managed_by=label)


def _apply_destinations(document: Document, *, label: str, prune: bool, errors: Errors):
    """Create or update every destination in the file; references go in once all exist."""
    references = [o for o in DESTINATION_OPTIONS if o.kind.reference == "one"]
    stored = Destination.objects.defer("routing_key")
    if references:
        stored = stored.select_related(*(option.field for option in references))
    existing = {destination.name: destination for destination in stored}
    before = {name: _values(d, DESTINATION_OPTIONS) for name, d in existing.items()}
    applied: list[tuple[Entry, Destination, bool]] = []
    for entry in document.destinations:
        instance = existing.get(entry.name) or Destination()
        if instance.pk is None and entry.key is None and not entry.key_refused:
            errors.append((f"{entry.path}.{ROUTING_KEY_OPTION}", NEW_KEY_NEEDED))
        key_changed = entry.key is not None and (
            instance.pk is None or entry.key.strip() != instance.readable_routing_key()
        )
        # References keep their stored value here: what they name may not exist yet.
        data = _destination_data(entry, instance, key=entry.key, ids=None)
        form = DestinationForm(data=data, instance=instance)
        if _refused(form, entry.path, DESTINATION_OPTIONS, errors, entry=entry):
            continue
        after = _values(instance, DESTINATION_OPTIONS)
        _save(form, instance, changed=after != before.get(entry.name) or key_changed, label=label)
        applied.append((entry, instance, key_changed))
    if references:
        _apply_references(document, applied, references, before, label, prune, errors)
    return [
        _change(
            "destination",
            entry.name,
            before.get(entry.name),
            _values(instance, DESTINATION_OPTIONS),
            secret_changed=key_changed,
        )
        for entry, instance, key_changed in applied
    ]


def _apply_references(document, applied, references, before, label, prune, errors) -> None:
    """Point each destination at the ones it names (a fallback), now that all of them exist."""
    ids = _destination_ids(document, prune=prune)
    # Cleared first, so each form checks for loops (A → B → A) against the file's references
    # set so far, not against stored ones the file is about to replace.
    cleared = {option.field: None for option in references}
    # Neither this nor the restore below is kept in the audit trail: together they change
    # nothing, and a reference that does change is saved through the form, which is kept.
    Destination.objects.filter(pk__in=[i.pk for _, i, _ in applied]).update(**cleared)
    for entry, instance, _ in applied:
        data = _destination_data(entry, instance, key=None, ids=ids)
        if _unknown_names(entry, references, ids, document, prune, errors):
            continue
        form = DestinationForm(data=data, instance=instance)
        if _refused(form, entry.path, DESTINATION_OPTIONS, errors, entry=entry):
            continue
        if _values(instance, DESTINATION_OPTIONS) != before.get(entry.name):
            _save(form, instance, changed=True, label=label)
        else:  # unchanged: put the stored references back without touching updated_at
            restored = {f"{o.field}_id": getattr(instance, f"{o.field}_id") for o in references}
            Destination.objects.filter(pk=instance.pk).update(**restored)


def _destination_data(
    entry: Entry, instance: Destination, *, key: str | None, ids: dict[str, int] | None
) -> dict[str, Any]:
    """The destination form's data for this entry (a blank key keeps the stored one)."""
    data: dict[str, Any] = {"name": entry.name, ROUTING_KEY_OPTION: key or ""}
    for option in DESTINATION_OPTIONS:
        value = entry.values[option.name]
        if option.kind.reference == "one":
            stored = getattr(instance, f"{option.field}_id", None)
            value = stored if ids is None else ids.get(value)
            data[option.field] = "" if value is None else value
        else:
            data[option.field] = option.kind.to_form(value)
    return data


def _apply_detections(document: Document, *, label: str, prune: bool, errors: Errors):
    existing = {d.name: d for d in Detection.objects.prefetch_related("destinations")}
    before = {name: _values(d, DETECTION_VALUES) for name, d in existing.items()}
    ids = _destination_ids(document, prune=prune)
    changes = []
    for entry in document.detections:
        instance = existing.get(entry.name) or Detection()
        unknown = _unknown_names(entry, DETECTION_VALUES, ids, document, prune, errors)
        data: dict[str, Any] = {"name": entry.name}
        for option in DETECTION_VALUES:
            value = entry.values[option.name]
            if option.kind.reference == "many":
                # Unknown names are reported; the form checks the rest.
                data[option.field] = sorted({ids[n.strip()] for n in value if n.strip() in ids})
            else:
                data[option.field] = option.kind.to_form(value)
        form = DetectionForm(data=data, instance=instance)
        if _refused(form, entry.path, DETECTION_VALUES, errors, entry=entry) or unknown:
            continue
        after = {**_values(instance, DETECTION_VALUES, saved=False), **_chosen_names(form)}
        _save(form, instance, changed=after != before.get(entry.name), label=label)
        changes.append(_change("detection", entry.name, before.get(entry.name), after))
    return changes


def _chosen_names(form: ModelForm) -> dict[str, list[str]]:
    """The many-to-many values the form accepted, by name (the instance has them once saved)."""
    return {
        option.name: sorted(related.name for related in form.cleaned_data[option.field])
        for option in DETECTION_VALUES
        if option.kind.reference == "many"
    }


def _values(instance, options: tuple[Option, ...], *, saved: bool = True) -> dict[str, Any]:
    """The record's values as the file writes them (many-to-many ones only once it is saved)."""
    return {
        option.name: option.read(instance)
        for option in options
        if saved or option.kind.reference != "many"
    }


def _save(form: ModelForm, instance, *, changed: bool, label: str) -> None:
    """Save what changed; an unchanged record keeps its updated_at and is only marked."""
    if changed:
        instance.managed_by = label
        # One change in the audit trail, many-to-many choices included.
        with recorded_once(instance, created=instance._state.adding):
            form.save()
    elif instance.managed_by != label:
        update_recorded(type(instance).objects.filter(pk=instance.pk), managed_by=label)
        instance.managed_by = label


def _leave_destinations(document: Document, *, prune: bool) -> list[Change]:
    others = Destination.objects.defer("routing_key").exclude(
        name__in=document.named["destinations"]
    )
    return _leave(others.order_by("name"), "destination", prune=prune)


def _leave_detections(document: Document, *, prune: bool) -> list[Change]:
    others = Detection.objects.exclude(name__in=document.named["detections"])
    return _leave(others.order_by("name"), "detection", prune=prune)


def _leave(records, kind: str, *, prune: bool) -> list[Change]:
    """Delete (with prune) or keep, unmarked, the records the file does not name."""
    changes = []
    for record in records:
        if prune:
            changes.append(Change(action=Action.DELETE, kind=kind, name=record.name))
            record.delete()
        else:
            changes.append(
                Change(
                    action=Action.KEEP, kind=kind, name=record.name, managed_by=record.managed_by
                )
            )
    if not prune:
        update_recorded(records, managed_by="")
    return changes


def _destination_ids(document: Document, *, prune: bool) -> dict[str, int]:
    """The destinations a reference may name: the file's (saved by now), and with no prune all."""
    ids = dict(Destination.objects.values_list("name", "pk"))
    if prune:
        return {name: pk for name, pk in ids.items() if name in document.named["destinations"]}
    return ids


def _unknown_names(
    entry: Entry,
    options: tuple[Option, ...],
    ids: dict[str, int],
    document: Document,
    prune: bool,
    errors: Errors,
) -> bool:
    """Report each destination name this entry references that does not (or will not) exist."""
    found = False
    for option in options:
        value = entry.values[option.name]
        if option.kind.reference == "one":
            named = [] if value is None else [(f"{entry.path}.{option.name}", value)]
        elif option.kind.reference == "many":
            named = [(f"{entry.path}.{option.name}[{i}]", name) for i, name in enumerate(value)]
        else:
            continue
        for path, name in named:
            name = name.strip()
            if name in ids:
                continue
            found = True
            if name in document.named["destinations"]:
                continue  # its own entry was refused, and says why
            if prune and Destination.objects.filter(name=name).exists():
                errors.append((path, f"“{name}” is not in the file, so --prune deletes it."))
            else:
                errors.append((path, f"no destination is named “{name}”."))
    return found


def _refused(
    form: ModelForm, path: str, options: tuple[Option, ...], errors: Errors, *, entry: Entry
) -> bool:
    """Note the form's errors under the file's paths; True when there were any (or earlier)."""
    if form.is_valid():
        return entry.refused
    names = {option.field: option.name for option in options}
    form_errors: ErrorDict = form.errors
    for field, messages in form_errors.items():
        if field == ROUTING_KEY_OPTION and entry.key is None:
            continue  # no key was given: what is missing is reported already
        where = path if field == "__all__" else f"{path}.{names.get(field, field)}"
        errors.extend((where, message) for message in messages)
    return True


def _change(
    kind: str, name: str, before: dict | None, after: dict, *, secret_changed: bool = False
) -> Change:
    if before is None:
        return Change(action=Action.CREATE, kind=kind, name=name)
    fields = [
        FieldChange(option=option, old=before[option], new=value)
        for option, value in after.items()
        if before[option] != value
    ]
    if secret_changed:
        fields.insert(0, FieldChange(option=ROUTING_KEY_OPTION, secret=True))
    action = Action.UPDATE if fields else Action.UNCHANGED
    return Change(action=action, kind=kind, name=name, fields=tuple(fields))


def _path_order(error: tuple[str, str]) -> tuple:
    """Errors in the file's order: the whole file's first, then by section and index."""
    path = error[0]
    match = _PATH_ORDER.match(path)
    if match is None:
        return (0, path, 0)
    section_rank = 1 if match["section"] == "destinations" else 2
    return (section_rank, "", int(match["index"]))
