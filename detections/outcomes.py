"""Deciding a run's outcome from its count, the detection's threshold and any errors."""

import operator
from collections.abc import Sequence

from .models import MatchOperator, Outcome

_COMPARE = {
    MatchOperator.GREATER_THAN: operator.gt,
    MatchOperator.GREATER_THAN_OR_EQUAL: operator.ge,
    MatchOperator.LESS_THAN: operator.lt,
    MatchOperator.LESS_THAN_OR_EQUAL: operator.le,
    MatchOperator.EQUAL: operator.eq,
    MatchOperator.NOT_EQUAL: operator.ne,
}


def evaluate_outcome(
    *, match_operator: str, match_threshold: int, match_count: int, errors: Sequence = ()
) -> Outcome:
    """ERROR when errors were reported, else MATCHED when `count OP threshold` holds."""
    if errors:
        return Outcome.ERROR
    if _COMPARE[MatchOperator(match_operator)](match_count, match_threshold):
        return Outcome.MATCHED
    return Outcome.NOT_MATCHED


def matching_count(*, match_operator: str, match_threshold: int) -> int | None:
    """A match count for which the detection matches, or None if no count ≥ 0 can."""
    candidates = (match_threshold, match_threshold + 1, max(match_threshold - 1, 0), 0)
    for count in candidates:
        if _COMPARE[MatchOperator(match_operator)](count, match_threshold):
            return count
    return None
