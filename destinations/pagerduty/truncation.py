"""Keeping an event under PagerDuty's size limit: shrink its largest details, record every cut."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable

from project.strict_json import LONE_SURROGATE

from .events import (
    _ENCODER,
    ELLIPSIS,
    EVENT_MAX_BYTES,
    TRUNCATED_KEY,
    JSONValue,
    _shorten,
    event_size,
)

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
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ELLIPSIS_BYTES = len(_ENCODER.encode(ELLIPSIS).encode("utf-8"))
# Keys of a path are shown at most this long, so a huge key cannot make a huge path.
_PATH_KEY_MAX_LENGTH = 60


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
        if value.isascii() or not LONE_SURROGATE.search(value):
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


def fit_to_size(event: dict) -> dict:
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
