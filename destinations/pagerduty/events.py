"""PagerDuty Events API v2 events built from plain run facts: pure functions, no Django, no I/O."""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# PagerDuty's limits (tests/fake_pagerduty/SOURCE.md).
SUMMARY_MAX_LENGTH = 1024
DEDUP_KEY_MAX_LENGTH = 255
EVENT_MAX_BYTES = 512_000
ROUTING_KEY_LENGTH = 32

# Errors beyond this many are counted, not sent: an on-call reader needs the first few, not all.
MAX_ERRORS = 10
# The longest replay link the intake accepts; longer than a summary, which then cuts it (§5).
REPLAY_LINK_MAX_LENGTH = 8192

TRUNCATED_KEY = "_truncated"
ERRORS_TOTAL_KEY = "errors_total"
ELLIPSIS = "…"

SEVERITY_MAP = {"CRITICAL": "critical", "HIGH": "error", "MEDIUM": "warning", "LOW": "info"}
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
# NOT_MATCHED runs are recorded but never page anyone.
EVENT_OUTCOMES = ("MATCHED", "ERROR")

REPLAY_LINK_TEXT = "Replay the detection run"
TEST_SUMMARY_PREFIX = "Test alert from "
TEST_SOURCE = "test"
TEST_SEVERITY = "info"
TEST_NOTE = "This is a test alert; no action is needed."

RESERVED_DETAIL_KEYS: frozenset[str] = frozenset(
    {
        "detection_id",
        "detection_name",
        "severity",
        "description",
        "outcome",
        "match_count",
        "run_type",
        "run_id",
        "match_operator",
        "match_threshold",
        "match_eagerness",
        "match_exhaustiveness",
        "search_id",
        "trace_id",
        "ran_at",
        "range_start",
        "range_end",
        "replay_link",
        "errors",
        ERRORS_TOTAL_KEY,
        TRUNCATED_KEY,
    }
)

# When a link is too long for any summary and must be cut, the name keeps this much of itself:
# a summary that no longer says which detection fired helps nobody.
SUMMARY_MIN_NAME_LENGTH = 32

# When details are shrunk, no kept value is cut below this many bytes (or a quarter of its
# container's budget, if less) while dropping trailing items can make room instead: a few words
# of each kept value beat a byte of every value.
MIN_KEPT_VALUE_BYTES = 64
# Deeper than this, a value that must shrink becomes its JSON text, shortened; this bounds the
# work (each level re-measures its subtree) and the stack.
MAX_SHRINK_DEPTH = 32
# The `_truncated` record names at most this many cuts (the largest), each path at most this long.
MAX_TRUNCATION_ENTRIES = 20
TRUNCATION_PATH_MAX_BYTES = 200
# Where the record says how many cuts it leaves out.
MORE_CUTS_KEY = ELLIPSIS
# Room kept for the record: every entry is a path plus a few counters, well under 100 bytes more.
_TRUNCATION_RECORD_RESERVE = (MAX_TRUNCATION_ENTRIES + 1) * (TRUNCATION_PATH_MAX_BYTES + 100) + 32

# Up to this many top-level details are measured one by one (see _MeasuredEvent).
_MEASURE_APART_MAX_KEYS = 1000
# The one JSON spelling used for sizes and for the posted bytes, so the two always agree.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# A placeholder key of the right length: only its size matters when measuring.
_SIZING_ROUTING_KEY = "x" * ROUTING_KEY_LENGTH
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_ELLIPSIS_BYTES = len(_ENCODER.encode(ELLIPSIS).encode("utf-8"))
# Keys of a path are shown at most this long, so a huge key cannot make a huge path.
_PATH_KEY_MAX_LENGTH = 60

type JSONValue = Any


@dataclass(frozen=True, kw_only=True)
class RunFacts:
    """The facts of one detection run (and its detection) that shape the event."""

    detection_id: str
    detection_name: str
    description: str  # "" when there is none
    severity: str  # CRITICAL/HIGH/MEDIUM/LOW
    match_operator: str
    match_threshold: int
    match_eagerness: str
    outcome: str  # MATCHED/ERROR
    match_count: int
    run_type: str
    run_id: str
    ran_at: datetime
    range_start: datetime
    range_end: datetime
    match_exhaustiveness: str | None = None
    search_id: str | None = None
    trace_id: str | None = None
    errors: list = field(default_factory=list)  # strings or JSON objects, as the engine sent them
    errors_total: int | None = None  # how many the engine sent, when more than `errors` holds
    replay_link: str | None = None


@dataclass(frozen=True, kw_only=True)
class DestinationOptions:
    """The settings of one destination that shape its events."""

    severity_override: str = ""  # "" = automatic, else one of PAGERDUTY_SEVERITIES
    component: str = ""
    group: str = ""
    event_class: str = ""
    custom_details: dict = field(default_factory=dict)


def dedup_key_for(detection_name: str) -> str:
    """Return the SHA-256 hex of the UTF-8 detection name: one detection, one incident."""
    # surrogatepass: a name with a stray surrogate still gets a stable key instead of an error.
    return hashlib.sha256(detection_name.encode("utf-8", "surrogatepass")).hexdigest()


def build_trigger_event(
    *,
    run: RunFacts,
    options: DestinationOptions,
    default_source: str,
    client: str,
    client_url: str,
) -> dict:
    """Build the trigger event (without routing key) for a MATCHED or ERROR run."""
    outcome = str(run.outcome)
    if outcome not in EVENT_OUTCOMES:
        raise ValueError(f"Only {' and '.join(EVENT_OUTCOMES)} runs get an event, not {outcome}.")
    severity = str(run.severity)
    if severity not in SEVERITY_MAP:
        raise ValueError(f"Unknown detection severity {severity!r}.")
    link = run.replay_link if run.replay_link and run.replay_link.strip() else None
    source = link or default_source
    if not source or not source.strip():
        raise ValueError("default_source must not be blank: PagerDuty requires a source.")
    payload = {
        "summary": _trigger_summary(severity=severity, name=run.detection_name, link=link),
        "severity": _pagerduty_severity(options, default=SEVERITY_MAP[severity]),
        "source": source,
        "timestamp": _rfc3339(run.ran_at, name="ran_at"),
        **_classification(options),
        "custom_details": _with_destination_details(_run_details(run, link), options),
    }
    event: dict[str, Any] = {
        "event_action": "trigger",
        "dedup_key": dedup_key_for(run.detection_name),
        "payload": payload,
    }
    if link:
        event["links"] = [{"href": link, "text": REPLAY_LINK_TEXT}]
    event.update(_client_fields(client, client_url))
    return _fit_to_size(event)


def build_test_event(
    *,
    destination_name: str,
    options: DestinationOptions,
    sent_by: str,
    sent_at: datetime,
    dedup_key: str,
    client: str,
    client_url: str,
) -> dict:
    """Build a test trigger (without routing key) saying who sent it and that it needs no action."""
    _check_dedup_key(dedup_key)
    sent_at_text = _rfc3339(sent_at, name="sent_at")
    test_details = {
        "sent_by": sent_by,
        "sent_at": sent_at_text,
        "destination_name": destination_name,
        "note": TEST_NOTE,
    }
    payload = {
        "summary": TEST_SUMMARY_PREFIX
        + _shorten(destination_name, SUMMARY_MAX_LENGTH - len(TEST_SUMMARY_PREFIX)),
        "severity": _pagerduty_severity(options, default=TEST_SEVERITY),
        "source": TEST_SOURCE,
        "timestamp": sent_at_text,
        **_classification(options),
        "custom_details": _with_destination_details(test_details, options),
    }
    event: dict[str, Any] = {"event_action": "trigger", "dedup_key": dedup_key, "payload": payload}
    event.update(_client_fields(client, client_url))
    return _fit_to_size(event)


def build_resolve_event(*, dedup_key: str) -> dict:
    """Build the event (without routing key) that resolves the alert with this dedup key."""
    _check_dedup_key(dedup_key)
    return {"event_action": "resolve", "dedup_key": dedup_key}


def serialize_event(event: dict, *, routing_key: str) -> bytes:
    """Return the exact bytes to post: routing key first, then the event, as compact UTF-8 JSON."""
    # The given key always wins, so a stray key in a stored body can never be sent instead.
    body = {"routing_key": routing_key, **{k: v for k, v in event.items() if k != "routing_key"}}
    return _ENCODER.encode(body).encode("utf-8")


def event_size(event: dict) -> int:
    """Return how many bytes the event weighs once posted with a routing key."""
    return len(serialize_event(event, routing_key=_SIZING_ROUTING_KEY))


# Building blocks.


def _shorten(text: str, max_length: int) -> str:
    """Return text, or its start ended with an ellipsis, in at most max_length characters."""
    if len(text) <= max_length:
        return text
    if max_length <= 0:
        return ""
    return text[: max_length - 1] + ELLIPSIS


def _trigger_summary(*, severity: str, name: str, link: str | None) -> str:
    """Spell "[SEVERITY] name - link" in at most 1024 characters, shortening the name, not the link.

    Only a link too long to fit even beside a one-character name is cut (ending in …); the name
    then keeps up to SUMMARY_MIN_NAME_LENGTH characters, as the cut link no longer leads anywhere
    and the summary must still say which detection fired. Links, source and details keep it whole.
    """
    prefix = f"[{severity}] "
    if not link:
        return prefix + _shorten(name, SUMMARY_MAX_LENGTH - len(prefix))
    separator = " - "
    name_room = SUMMARY_MAX_LENGTH - len(prefix) - len(separator) - len(link)
    if name_room >= min(len(name), 1):
        return prefix + _shorten(name, name_room) + separator + link
    short_name = _shorten(name, SUMMARY_MIN_NAME_LENGTH)
    link_room = SUMMARY_MAX_LENGTH - len(prefix) - len(short_name) - len(separator)
    return prefix + short_name + separator + _shorten(link, link_room)


def _pagerduty_severity(options: DestinationOptions, *, default: str) -> str:
    """Return the destination's override if it has one, else the default."""
    override = str(options.severity_override or "")
    if not override:
        return default
    if override not in PAGERDUTY_SEVERITIES:
        raise ValueError(
            f"Unknown severity override {override!r}; expected one of "
            f"{', '.join(PAGERDUTY_SEVERITIES)}."
        )
    return override


def _rfc3339(moment: datetime, *, name: str) -> str:
    """Spell a timezone-aware moment as RFC 3339 (ISO 8601 with an offset such as +00:00)."""
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"{name} must be timezone-aware; got the naive {moment.isoformat()}.")
    if offset.seconds % 60 or offset.microseconds:
        # RFC 3339 offsets are whole minutes; some historical zones (local mean time) are not.
        moment = moment.astimezone(UTC)
    return moment.isoformat()


def _classification(options: DestinationOptions) -> dict[str, str]:
    """Return the payload's component, group and class, leaving out the blank ones."""
    fields = {"component": options.component, "group": options.group, "class": options.event_class}
    return {name: value for name, value in fields.items() if value and value.strip()}


def _client_fields(client: str, client_url: str) -> dict[str, str]:
    """Return client and client_url, leaving out a blank one rather than sending an empty value."""
    fields = {"client": client, "client_url": client_url}
    return {name: value for name, value in fields.items() if value and value.strip()}


def _check_dedup_key(dedup_key: str) -> None:
    """Refuse a dedup key PagerDuty would refuse or that would match every alert."""
    if not dedup_key or not dedup_key.strip():
        raise ValueError("dedup_key must not be blank.")
    if len(dedup_key) > DEDUP_KEY_MAX_LENGTH:
        raise ValueError(
            f"dedup_key must be at most {DEDUP_KEY_MAX_LENGTH} characters; got {len(dedup_key)}."
        )


def _is_absent(value: object) -> bool:
    """Tell whether a fact is missing (None or blank text), so it is left out instead of null."""
    return value is None or (isinstance(value, str) and not value.strip())


def _run_details(run: RunFacts, link: str | None) -> dict[str, JSONValue]:
    """Return the run's facts as custom details, leaving out the absent ones."""
    # str() turns a model's choices member into its plain value; None stays None to be left out.
    facts: dict[str, JSONValue] = {
        "detection_id": str(run.detection_id),
        "detection_name": run.detection_name,
        "severity": str(run.severity),
        "description": run.description,
        "outcome": str(run.outcome),
        "match_count": run.match_count,
        "run_type": str(run.run_type),
        "run_id": run.run_id,
        "match_operator": str(run.match_operator),
        "match_threshold": run.match_threshold,
        "match_eagerness": str(run.match_eagerness),
        "match_exhaustiveness": None
        if run.match_exhaustiveness is None
        else str(run.match_exhaustiveness),
        "search_id": run.search_id,
        "trace_id": run.trace_id,
        "ran_at": _rfc3339(run.ran_at, name="ran_at"),
        "range_start": _rfc3339(run.range_start, name="range_start"),
        "range_end": _rfc3339(run.range_end, name="range_end"),
        "replay_link": link,
    }
    details = {name: value for name, value in facts.items() if not _is_absent(value)}
    if run.errors:
        details["errors"] = list(run.errors[:MAX_ERRORS])
        # The engine's own count: the stored list may hold only the first errors it sent.
        total = max(len(run.errors), run.errors_total or 0)
        if total > MAX_ERRORS:
            details[ERRORS_TOTAL_KEY] = total
    return details


def _with_destination_details(
    own: dict[str, JSONValue], options: DestinationOptions
) -> dict[str, JSONValue]:
    """Add the destination's custom details after our own; our names always win.

    Reserved names are dropped from the destination's details even when the run lacks that fact,
    so an event never carries, say, an `errors_total` or `_truncated` that the run did not produce.
    """
    extra = {
        name: value
        for name, value in (options.custom_details or {}).items()
        if name not in own and name not in RESERVED_DETAIL_KEYS
    }
    return {**own, **extra}


# Keeping the event under PagerDuty's size limit.


def _json_size(value: JSONValue) -> int:
    """Return the bytes of a value's compact JSON, exactly as serialize_event spells it."""
    text = _ENCODER.encode(value)
    # An ASCII text has as many bytes as characters; checking that is free.
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _json_safe(value: JSONValue) -> JSONValue:
    """Return a copy that strict JSON in UTF-8 can carry: no lone surrogates, no NaN or infinity.

    Both arrive from lenient JSON parsers ("\\ud800", NaN); PagerDuty (and PostgreSQL) refuse them,
    so a lone surrogate becomes U+FFFD and a non-finite number its name as text.
    """
    if isinstance(value, str):
        if value.isascii() or not _LONE_SURROGATE.search(value):
            return value
        # A round trip through UTF-16 joins split pairs and replaces the truly lone halves.
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {_json_safe(key): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    return value


def _fit_to_size(event: dict) -> dict:
    """Return the event, its largest custom details shrunk if it would exceed EVENT_MAX_BYTES."""
    try:
        measured = _MeasuredEvent(event)
    except ValueError:  # UnicodeEncodeError included
        measured = _MeasuredEvent(_json_safe(event))
    if measured.size <= EVENT_MAX_BYTES:
        return measured.event
    # What the details may weigh: the limit minus everything else, less room for the record.
    budget = EVENT_MAX_BYTES - measured.fixed_size - _TRUNCATION_RECORD_RESERVE
    if budget < _container_overhead(0):
        raise ValueError(
            "The event's summary, source, links and classification alone exceed PagerDuty's "
            f"{EVENT_MAX_BYTES:,}-byte limit."
        )
    shrinker = _DetailsShrinker(known_sizes=measured.detail_sizes)
    payload = measured.event["payload"]
    # A fresh dict, so the record is never written into the caller's details.
    details = dict(
        shrinker.fit(
            payload["custom_details"], budget, path="", depth=0, size=measured.details_size
        )
    )
    details[TRUNCATED_KEY] = shrinker.record()
    fitted = {**measured.event, "payload": {**payload, "custom_details": details}}
    size = event_size(fitted)
    if size > EVENT_MAX_BYTES:  # cannot happen: the budgets above add up exactly
        raise RuntimeError(f"Shrunk event is still {size:,} bytes.")
    return fitted


class _MeasuredEvent:
    """An event's size, measured once, split into its details and everything else."""

    def __init__(self, event: dict) -> None:
        self.event = event
        details = event["payload"]["custom_details"]
        bare = {**event, "payload": {**event["payload"], "custom_details": {}}}
        self.fixed_size = event_size(bare) - len("{}")
        # Sizes of the top-level detail values, by identity, so shrinking need not measure a huge
        # value twice. Measuring value by value costs a call each, so a dict with very many keys
        # is measured whole instead (its values are then measured lazily, only as far as needed).
        self.detail_sizes: dict[int, int] = {}
        if len(details) > _MEASURE_APART_MAX_KEYS:
            self.details_size = _json_size(details)
        else:
            self.details_size = _container_overhead(len(details))
            for key, value in details.items():
                value_size = _json_size(value)
                self.detail_sizes[id(value)] = value_size
                self.details_size += _key_size(key) + len(":") + value_size
        self.size = self.fixed_size + self.details_size


def _water_level(sizes: list[int], available: int) -> int:
    """Return the largest cap C with sum(min(size, C)) <= available: the largest shrink first."""
    ordered = sorted(sizes, reverse=True)
    rest = sum(ordered)
    if rest <= available:
        return ordered[0] if ordered else 0
    for count, size in enumerate(ordered, start=1):
        rest -= size
        # The `count` largest are capped at C, the others stay whole.
        cap = (available - rest) // count
        next_size = ordered[count] if count < len(ordered) else 0
        if cap >= next_size:
            return cap
    return 0


def _shorten_to_bytes(text: str, budget: int) -> str:
    """Return the longest start of text, ended with an ellipsis, whose JSON fits budget bytes."""
    # Every character weighs at least a byte, so no more than `budget` of them can fit.
    low, high = 0, min(len(text), budget)
    while low < high:
        middle = (low + high + 1) // 2
        if _json_size(text[:middle] + ELLIPSIS) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS


def _key_size(key: object) -> int:
    """Return the bytes a dict key takes in JSON, quotes included (JSON turns 1 into "1")."""
    return _json_size({key: 0}) - len("{:0}")


def _child_path(path: str, key: object) -> str:
    """Name a child the way a reader writes it: errors[3].detail, or a["odd key"]."""
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    name = str(key)
    if _PLAIN_KEY.fullmatch(name):
        name = _shorten(name, _PATH_KEY_MAX_LENGTH)
        return f"{path}.{name}" if path else name
    return f"{path}[{json.dumps(_shorten(name, _PATH_KEY_MAX_LENGTH), ensure_ascii=False)}]"


class _DetailsShrinker:
    """Shrinks JSON values into byte budgets, largest values first, and remembers every cut."""

    def __init__(self, *, known_sizes: dict[int, int]) -> None:
        self.cuts: list[tuple[str, dict[str, int]]] = []
        # Sizes already measured, by the identity of values that stay alive while shrinking.
        self._known_sizes = known_sizes

    def _size(self, value: JSONValue) -> int:
        """Return the JSON size of a value, measuring it only if it was not measured already."""
        size = self._known_sizes.get(id(value))
        return _json_size(value) if size is None else size

    def fit(
        self, value: JSONValue, budget: int, *, path: str, depth: int, size: int | None = None
    ) -> JSONValue:
        """Return value, or a smaller value of the same shape, whose JSON fits budget bytes."""
        if size is None:
            size = self._size(value)
        if size <= budget:
            return value
        if isinstance(value, dict) and depth < MAX_SHRINK_DEPTH:
            return self._fit_dict(value, budget, size, path=path, depth=depth)
        if isinstance(value, list | tuple) and depth < MAX_SHRINK_DEPTH:
            return self._fit_list(list(value), budget, size, path=path, depth=depth)
        # A long text is shortened; anything else that cannot be cut (a huge number, a structure
        # nested too deep) is replaced by its own JSON text, shortened.
        text = value if isinstance(value, str) else _ENCODER.encode(value)
        self.cuts.append((path, {"original_bytes": size}))
        return _shorten_to_bytes(text, budget)

    def _fit_dict(self, value: dict, budget: int, size: int, *, path: str, depth: int) -> dict:
        """Fit a dict: shrink its largest values; drop trailing keys only if that is not enough."""
        entries = list(value.items())
        # A key costs its JSON text and a colon; keys are never shortened, they are the structure.
        sizes, fixed = self._plan(((_key_size(key) + 1, item) for key, item in entries), budget)
        kept = len(sizes)
        if kept < len(entries):
            self.cuts.append(
                (path, {"original_bytes": size, "original_keys": len(entries), "kept_keys": kept})
            )
        cap = _water_level(sizes, budget - _container_overhead(kept) - fixed)
        return {
            key: self._fit_child(item, item_size, cap, path=_child_path(path, key), depth=depth)
            for (key, item), item_size in zip(entries[:kept], sizes, strict=True)
        }

    def _fit_list(self, value: list, budget: int, size: int, *, path: str, depth: int) -> list:
        """Fit a list: shrink its largest items; drop trailing items only if that is not enough."""
        sizes, _ = self._plan(((0, item) for item in value), budget)
        kept = len(sizes)
        if kept < len(value):
            self.cuts.append(
                (path, {"original_bytes": size, "original_items": len(value), "kept_items": kept})
            )
        cap = _water_level(sizes, budget - _container_overhead(kept))
        return [
            self._fit_child(item, item_size, cap, path=_child_path(path, index), depth=depth)
            for index, (item, item_size) in enumerate(zip(value[:kept], sizes, strict=True))
        ]

    def _fit_child(
        self, item: JSONValue, item_size: int, cap: int, *, path: str, depth: int
    ) -> JSONValue:
        """Return the child as it is when it fits under the cap, else shrunk to the cap."""
        if item_size <= cap:
            return item
        return self.fit(item, cap, path=path, depth=depth + 1, size=item_size)

    def _plan(self, entries: Iterable[tuple[int, JSONValue]], budget: int) -> tuple[list[int], int]:
        """Find how many leading entries fit with each value cut to at most the floor.

        Entries are (fixed bytes, value) pairs, measured lazily and only until the budget runs
        out, so a list of millions stops early. Returns the kept values' sizes and fixed bytes.
        """
        # Never below what the shortest cut value ("…") weighs, so every cap can be met.
        floor = max(_ELLIPSIS_BYTES, min(MIN_KEPT_VALUE_BYTES, budget // 4))
        sizes: list[int] = []
        used = _container_overhead(0)
        fixed = 0
        for overhead, item in entries:
            item_size = self._size(item)
            separator = len(",") if sizes else 0
            cost = separator + overhead + min(item_size, floor)
            if used + cost > budget:
                break
            used += cost
            fixed += overhead
            sizes.append(item_size)
        return sizes, fixed

    def record(self) -> dict[str, JSONValue]:
        """Return what was cut, by path: the largest cuts, and how many more there were."""
        largest = sorted(self.cuts, key=lambda cut: cut[1]["original_bytes"], reverse=True)
        chosen = {id(cut) for cut in largest[:MAX_TRUNCATION_ENTRIES]}
        record: dict[str, JSONValue] = {}
        for cut in self.cuts:  # in document order, easier to read than by size
            path, facts = cut
            name = path or "custom_details"
            if _json_size(name) > TRUNCATION_PATH_MAX_BYTES:
                name = _shorten_to_bytes(name, TRUNCATION_PATH_MAX_BYTES)
            if id(cut) in chosen and name not in record:
                record[name] = facts
        left_out = len(self.cuts) - len(record)
        if left_out:
            record[MORE_CUTS_KEY] = {"more_cuts": left_out}
        return record


def _container_overhead(count: int) -> int:
    """Return the bytes of the brackets and commas of a container with count entries."""
    return len("[]") + max(count - 1, 0)
