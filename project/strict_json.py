"""Strict JSON: decoded without NaN, Infinity or huge numbers, checked for what cannot be stored."""

import json
import math
import re
from typing import Any, Literal

# Longer integers are refused while parsing: no count, id or detail needs one, and converting
# them takes time quadratic in their length.
MAX_INTEGER_DIGITS = 100
# A lone surrogate (which JSON's "\ud800" escape produces) is not Unicode: UTF-8 cannot encode it.
LONE_SURROGATE = re.compile("[\ud800-\udfff]")

type Unstorable = Literal["nul", "surrogate", "too_deep"]


def loads(
    text: str,
    *,
    constant_hint: str = "",
    echo_length: int = 60,
    refuse_duplicate_keys: bool = False,
) -> Any:
    """Decode JSON text, refusing NaN, Infinity and overlong numbers (and, if asked, repeated keys).

    Raises json.JSONDecodeError for broken JSON, RecursionError for JSON nested too deeply, and
    ValueError with one sentence for what the hooks refuse; the caller words the message.
    `constant_hint` follows "NaN is not a JSON number"; `echo_length` bounds a refused number
    or key repeated back.
    """

    def refuse_constant(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number{constant_hint}.")

    def finite_float(number_text: str) -> float:
        number = float(number_text)
        if not math.isfinite(number):
            raise ValueError(f"the number {number_text[:echo_length]} is too large.")
        return number

    def without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                # Which copy would win is a parser detail; the sender should say what it means.
                shown = key if len(key) <= echo_length else key[: echo_length - 1] + "…"
                raise ValueError(f"the key {json.dumps(shown)} appears twice in one object.")
            result[key] = value
        return result

    return json.loads(
        text,
        parse_constant=refuse_constant,
        parse_float=finite_float,
        parse_int=_bounded_int,
        object_pairs_hook=without_duplicates if refuse_duplicate_keys else None,
    )


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise ValueError(f"an integer has more than {MAX_INTEGER_DIGITS} digits.")
    return int(text)


def unstorable(value: object, *, max_depth: int) -> Unstorable | None:
    """Why the databases cannot store this decoded JSON, or None when they can.

    PostgreSQL refuses NUL in text and in jsonb, a lone surrogate cannot be encoded as UTF-8, and
    structures deeper than `max_depth` are refused before anything recurses into them.
    """
    # Walked with a stack, not recursion, so depth is measured before anything recurses.
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "nul"
            if not item.isascii() and LONE_SURROGATE.search(item):
                return "surrogate"
        elif isinstance(item, list | dict):
            if depth > max_depth:
                return "too_deep"
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)
    return None
