"""Reading a configuration file: its text, its records' shape, and the keys it points at."""

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from project import strict_json

from .options import DESTINATION_OPTIONS, DETECTION_VALUES, ROUTING_KEY_OPTION, Option

# How much of a configuration is read at most: one of thousands of records is far less.
CONFIG_MAX_BYTES = 16 * 1024 * 1024
# A key file holds one 32-character key and maybe a newline; anything much larger is not one.
KEY_FILE_MAX_BYTES = 1024
KEY_FORMS = '{"is_secret": true, "from_env": "NAME"} or {"is_secret": true, "from_file": "PATH"}'
LISTS = ("destinations", "detections")


class ConfigRefused(ValueError):
    """The file was refused; `errors` holds every (path, message) found, "" for the whole file."""

    def __init__(self, errors: list[tuple[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{path or 'file'}: {message}" for path, message in errors))

    def by_path(self, *, whole: str) -> dict[str, list[str]]:
        """The errors as {path: [messages]}, the whole file's under `whole`."""
        grouped: dict[str, list[str]] = {}
        for path, message in self.errors:
            grouped.setdefault(path or whole, []).append(message)
        return grouped


@dataclass(kw_only=True)
class Entry:
    """One record as the file gives it: its path, name and every value (defaults filled in)."""

    path: str
    name: str
    values: dict[str, Any]
    # Destinations only: the key read from the environment or a file; None keeps the stored one.
    key: str | None = None
    # Some of its values were refused (and reported): they stand at their defaults, so that
    # the form still checks the others, but the entry is never applied.
    refused: bool = False
    key_refused: bool = False


@dataclass(kw_only=True)
class Document:
    """The readable records of a file, and the errors of those that are not."""

    destinations: list[Entry] = field(default_factory=list)
    detections: list[Entry] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    # Names the file gives, readable or not: references to them are not reported again.
    named: dict[str, set[str]] = field(default_factory=lambda: {name: set() for name in LISTS})


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key repeated in one mapping (which copy wins is a detail)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} appears twice in one mapping", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str) -> Any:
    """The data of a YAML (or JSON) text; ConfigRefused naming the line of a syntax error."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a safe loader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigRefused([("", f"not valid YAML or JSON: {where}{error.problem}.")]) from None
    except yaml.YAMLError as error:
        raise ConfigRefused([("", f"not valid YAML or JSON: {error}.")]) from None


def parse_json(text: str) -> Any:
    """The data of a JSON text; ConfigRefused naming the line of a syntax error."""
    try:
        return strict_json.loads(text, refuse_duplicate_keys=True)
    except json.JSONDecodeError as error:
        message = f"not valid JSON: {error.msg} at line {error.lineno}, column {error.colno}."
    except RecursionError:
        message = "not valid JSON: nested too deeply."
    except ValueError as error:
        message = f"not valid JSON: {error}"
    raise ConfigRefused([("", message)])


def read_document(data: Any, *, key_files: bool, base_dir: Path) -> Document:
    """The file's records with defaults filled in and keys read; every shape error collected.

    `key_files` allows keys given from_file (paths relative to `base_dir`).
    """
    document = Document()
    if data is None:
        document.errors.append(("", "the file is empty; it holds destinations and detections."))
        return document
    if not isinstance(data, dict):
        document.errors.append(("", "must be a mapping of destinations and detections."))
        return document
    for key in data:
        if key not in LISTS:
            document.errors.append((str(key), "unknown; a file has destinations and detections."))
    for section in LISTS:
        records = data.get(section)
        if records is None:
            continue
        if not isinstance(records, list):
            document.errors.append((section, "must be a list."))
            continue
        for index, raw in enumerate(records):
            path = f"{section}[{index}]"
            if section == "destinations":
                entry = _read_destination(raw, path, document, key_files, base_dir)
            else:
                entry = _read_detection(raw, path, document)
            if entry is not None:
                getattr(document, section).append(entry)
    return document


def _read_name(raw: dict, path: str, kind: str, document: Document, section: str) -> str | None:
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        document.errors.append((f"{path}.name", f"every {kind} needs a name (text)."))
        return None
    name = name.strip()
    if name in document.named[section]:
        document.errors.append((f"{path}.name", f"“{name}” is named twice in {section}."))
        return None
    document.named[section].add(name)
    return name


def _read_detection(raw: Any, path: str, document: Document) -> Entry | None:
    """A detection: its name and plain values."""
    if not isinstance(raw, dict):
        document.errors.append((path, "a detection is a mapping with a name and its values."))
        return None
    name = _read_name(raw, path, "detection", document, "detections")
    known = {option.name: option for option in DETECTION_VALUES}
    values, ok = {}, True
    for key, value in raw.items():
        if key == "name":
            continue
        option = known.get(key)
        if option is None:
            document.errors.append((f"{path}.{key}", _unknown(key, known)))
            ok = False
        elif not _accept(option, value, f"{path}.{key}", document):
            ok = False
        else:
            values[option.name] = value
    if name is None:  # reported, and its values checked all the same
        return None
    return Entry(
        path=path, name=name, values=_with_defaults(values, DETECTION_VALUES), refused=not ok
    )


def _read_destination(
    raw: Any, path: str, document: Document, key_files: bool, base_dir: Path
) -> Entry | None:
    """A destination: its name, its options written {"value": …}, and its key."""
    if not isinstance(raw, dict):
        document.errors.append((path, "a destination is a mapping with a name and its options."))
        return None
    name = _read_name(raw, path, "destination", document, "destinations")
    known = {option.name: option for option in DESTINATION_OPTIONS}
    values, ok, key, key_ok = {}, True, None, True
    for option_name, written in raw.items():
        option_path = f"{path}.{option_name}"
        if option_name == "name":
            continue
        if option_name == ROUTING_KEY_OPTION:
            key, key_ok = _read_key(written, option_path, document, key_files, base_dir)
            continue
        option = known.get(option_name)
        if option is None:
            document.errors.append(
                (option_path, _unknown(option_name, {ROUTING_KEY_OPTION, *known}))
            )
            ok = False
        elif not isinstance(written, dict) or set(written) != {"value"}:
            document.errors.append((option_path, 'an option is written {"value": …}.'))
            ok = False
        elif not _accept(option, written["value"], option_path, document):
            ok = False
        else:
            values[option.name] = written["value"]
    if name is None:  # reported, and its options checked all the same
        return None
    return Entry(
        path=path,
        name=name,
        values=_with_defaults(values, DESTINATION_OPTIONS),
        key=key,
        refused=not (ok and key_ok),
        key_refused=not key_ok,
    )


def _accept(option: Option, value: Any, path: str, document: Document) -> bool:
    if value is None or option.kind.accepts(value):
        return True
    document.errors.append((path, f"must be {option.kind.expected}."))
    return False


def _with_defaults(values: dict[str, Any], options: tuple[Option, ...]) -> dict[str, Any]:
    """Every option's value: the file's, or its default when left out or null."""
    return {
        option.name: option.default() if values.get(option.name) is None else values[option.name]
        for option in options
    }


def _unknown(name: Any, known) -> str:
    return f"unknown option “{name}”; known: {', '.join(sorted(known))}."


def _read_key(
    written: Any, path: str, document: Document, key_files: bool, base_dir: Path
) -> tuple[str | None, bool]:
    """The key a routing_key option points at (None: keep the stored one), and whether it is ok.

    Nothing the file gives here is repeated in a message: it may be a pasted key.
    """
    if not isinstance(written, dict) or written.get("is_secret") is not True:
        document.errors.append(
            (path, f"the key is never written in the file; give it as {KEY_FORMS}.")
        )
        return None, False
    sources = set(written) - {"is_secret"}
    if not sources:
        return None, True
    if sources - {"from_env", "from_file"} or len(sources) > 1:
        document.errors.append((path, f"give exactly one of from_env or from_file: {KEY_FORMS}."))
        return None, False
    (source,) = sources
    reference = written[source]
    if not isinstance(reference, str) or not reference.strip():
        document.errors.append((f"{path}.{source}", "must name a variable or a file (text)."))
        return None, False
    if source == "from_env":
        key, problem = _key_from_env(reference.strip())
    elif not key_files:
        key, problem = None, "keys are not read from the server's files here; use from_env."
    else:
        key, problem = _key_from_file(base_dir / reference.strip())
    if problem:
        document.errors.append((f"{path}.{source}", problem))
        return None, False
    return key, True


def _key_from_env(name: str) -> tuple[str | None, str | None]:
    value = os.environ.get(name)
    if value is None:
        return None, f"the environment variable {name} is not set."
    if not value.strip():
        return None, f"the environment variable {name} is empty."
    return value, None


def _key_from_file(path: Path) -> tuple[str | None, str | None]:
    try:
        with path.open("rb") as stream:
            raw = stream.read(KEY_FILE_MAX_BYTES + 1)
    except OSError as error:
        return None, f"cannot read {path}: {error.strerror or type(error).__name__}."
    if len(raw) > KEY_FILE_MAX_BYTES:
        return None, f"{path} is over {KEY_FILE_MAX_BYTES} bytes; a key file holds only the key."
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, f"{path} is not UTF-8 text."
    if not value.strip():
        return None, f"{path} is empty."
    return value, None
