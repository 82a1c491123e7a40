"""Why PagerDuty did not accept an event, one class per kind of answer."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial

# RFC 9110 delta-seconds are digits only; a fraction is tolerated, a sign is not.
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class PagerDutyError(Exception):
    """PagerDuty (or the way to it) did not accept an event; the subclass says why."""

    # Whether sending the same event again later may succeed; the worker's retry policy reads it.
    retryable: bool = False
    # What an admin should check, shown next to the failure (design §7).
    hint: str = "PagerDuty did not accept the event."

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        errors: Iterable[str] = (),
        response_excerpt: str = "",
        duration_ms: int = 0,
        retry_after: float | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.errors = list(errors)
        self.response_excerpt = response_excerpt
        self.duration_ms = duration_ms
        self.retry_after = retry_after
        # What PagerDuty said picks the hint when it says something we know; else the class's.
        self.hint = answer_hint(status_code, message, self.errors, default=type(self).hint)
        # The sentence is the only argument, so str() and the OSError bases both print it.
        super().__init__(self._sentence())

    def _sentence(self) -> str:
        """Build the one readable sentence that str() shows."""
        # PagerDuty's own messages may end in a full stop; the details follow in parentheses.
        message = self.message.removesuffix(".")
        if self.status_code is None:
            sentence = f"PagerDuty could not be reached: {message}"
        else:
            sentence = f"PagerDuty answered {self.status_code}: {message}"
        details = list(self.errors)
        if self.retry_after is not None:
            details.append(f"retry after {self.retry_after:g} seconds")
        if details:
            sentence += f" ({'; '.join(details)})"
        return sentence

    def __reduce__(self) -> tuple[partial[PagerDutyError], tuple[str]]:
        # Rebuild from the fields rather than from the sentence (the default would wrap it twice).
        rebuild = partial(
            type(self),
            status_code=self.status_code,
            errors=self.errors,
            response_excerpt=self.response_excerpt,
            duration_ms=self.duration_ms,
            retry_after=self.retry_after,
        )
        return rebuild, (self.message,)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, message={self.message!r}, "
            f"errors={self.errors!r}, retry_after={self.retry_after!r}, "
            f"duration_ms={self.duration_ms!r})"
        )


class EventRejected(PagerDutyError, ValueError):
    """PagerDuty answered 400: the event itself is invalid, so sending it again cannot help."""

    hint = (
        "PagerDuty refused the event: check the integration key's format "
        "and the event's required fields."
    )


class KeyRejected(PagerDutyError, PermissionError):
    """PagerDuty answered 401, 403 or 404: the integration key is not (or no longer) valid."""

    hint = (
        "PagerDuty refused the integration key: check the integration key "
        "(it may have been regenerated or the integration deleted)."
    )


class RequestRejected(PagerDutyError):
    """Any other refusal (a 3xx or 4xx) that sending the same request again cannot fix."""

    hint = (
        "PagerDuty (or a proxy in between) refused the request: "
        "check PAGERDUTY_EVENTS_URL and any proxy between this server and PagerDuty."
    )


class RateLimited(PagerDutyError):
    """PagerDuty answered 429: too many events for this integration key, try again later."""

    retryable = True
    hint = (
        "Rate limited: PagerDuty takes about 120 events a minute per integration key. "
        "Queued alerts wait and are retried; send a test again in a minute."
    )


class ServerError(PagerDutyError):
    """PagerDuty answered 5xx: its side is failing, so the event may be accepted later."""

    retryable = True
    hint = (
        "PagerDuty unreachable or failing (a 5xx answer). "
        "Queued alerts are retried automatically; try a test again later."
    )


class Unreachable(PagerDutyError, ConnectionError):
    """No answer at all: connection refused or reset, DNS or TLS failure."""

    retryable = True
    hint = (
        "PagerDuty unreachable: check this server's network, DNS and proxy settings "
        "and PAGERDUTY_EVENTS_URL. Queued alerts are retried automatically."
    )


class Timeout(Unreachable, TimeoutError):
    """PagerDuty did not answer (or accept the connection) within the destination's timeout."""

    hint = (
        "PagerDuty unreachable: no answer within the destination's timeout. "
        "Queued alerts are retried automatically."
    )


# Hints for what PagerDuty says, beyond what its status alone tells (design §7). PagerDuty's own
# wording is matched, and the fake PagerDuty's for the same cases (tests/support/fake_pagerduty).
UNKNOWN_KEY_HINT = (
    "PagerDuty does not know this integration key. It is well-formed, so check that it is the "
    "Integration Key of an Events API v2 integration on the intended service (not a REST API "
    "key), that the integration was not deleted or its key regenerated since, and that the "
    "destination's region (US or EU) is the one of the PagerDuty account."
)
MALFORMED_KEY_HINT = (
    "PagerDuty says the integration key is malformed: an Events API v2 Integration Key is 32 "
    "letters and digits. Copy it again from the integration on the service's Integrations tab "
    "(a REST API key or an older service key will not do)."
)
DISABLED_KEY_HINT = (
    "PagerDuty says the integration for this key is disabled: enable the integration (or its "
    "service) in PagerDuty, or store the key of an enabled Events API v2 integration."
)
NO_INTEGRATION_HINT = (
    "PagerDuty has no integration with this key: the integration or its service was deleted, "
    "or the key is of the other region (check the destination's region, US or EU). Add an "
    "Events API v2 integration to the service and store its Integration Key."
)
EVENT_FIELD_HINT = (
    "PagerDuty refused a field of the event (its errors say which), not the key. If the "
    "destination has a summary template, check that its preview shows a summary; otherwise this "
    "is a bug in this product, not in your settings: please report it with PagerDuty's errors."
)
# PagerDuty: "Length of 'routing_key' is incorrect (should be 32 characters)", "'routing_key'
# cannot contain non-alphanumeric characters."; the fake: "routing_key must be 32 characters;
# got 20", "routing_key must contain only letters …", "routing_key is invalid (pattern)".
_MALFORMED_KEY = re.compile(
    r"length of 'routing_key'|routing_key'? (?:must|cannot|is invalid)|wrong length", re.I
)
# PagerDuty's 400 ("errors": ["Invalid routing key"]) and 401 ("message": "Invalid routing key").
_UNKNOWN_KEY = re.compile(r"invalid routing[ _]key", re.I)
_DISABLED = re.compile(r"\bdisabled\b", re.I)
_NO_INTEGRATION = re.compile(r"\bno integration\b", re.I)


def answer_hint(
    status_code: int | None, message: str, errors: Iterable[str], *, default: str
) -> str:
    """The hint for PagerDuty's answer: by what it said when we know the words, else `default`."""
    if status_code is None or not 400 <= status_code < 500:
        # No answer, or a 5xx: PagerDuty's words say nothing about the key or the event.
        return default
    errors = [str(error) for error in errors]
    said = [message, *errors]
    # The key comes first: while PagerDuty cannot place the event, its other errors are moot.
    if any(_MALFORMED_KEY.search(text) for text in said):
        return MALFORMED_KEY_HINT
    if status_code in (400, 401) and any(_UNKNOWN_KEY.search(text) for text in said):
        return UNKNOWN_KEY_HINT
    if status_code == 403 and _DISABLED.search(message):
        return DISABLED_KEY_HINT
    if status_code == 404 and _NO_INTEGRATION.search(message):
        return NO_INTEGRATION_HINT
    # A 400's errors name the event's own faults ("'payload.summary' is missing or blank",
    # "payload.severity is required", its size): nothing an admin's key or settings cause.
    if status_code == 400 and errors:
        return EVENT_FIELD_HINT
    return default


def error_for_status(status_code: int) -> type[PagerDutyError]:
    """Return the error class, and so the retryability, for a non-2xx HTTP status."""
    if 200 <= status_code < 300:
        raise ValueError(f"HTTP {status_code} is a success, not an error.")
    if status_code == 400:
        return EventRejected
    if status_code in (401, 403, 404):
        return KeyRejected
    if status_code == 429:
        return RateLimited
    if 500 <= status_code < 600:
        return ServerError
    # 3xx (redirects are never followed, so the key cannot travel elsewhere), other 4xx and
    # anything nonsensical: sending the same request again would get the same answer.
    return RequestRejected


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Return the seconds from now a Retry-After value (delta-seconds or HTTP-date) asks for."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        seconds = float(value)
        # Absurdly many digits overflow to infinity, which is as meaningless as garbage.
        return seconds if math.isfinite(seconds) else None
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if moment.tzinfo is None:
        # HTTP dates are always GMT; the asctime form just does not say so.
        moment = moment.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # A date already past means "now", never a negative wait.
    return max(0.0, (moment - now).total_seconds())


class UnexpectedFailure(PagerDutyError):
    """Something no one foresaw went wrong on this side while sending or recording an attempt."""

    # Retried like an outage (within the attempt and age limits): most such failures pass, and
    # one that does not still ends the delivery as failed instead of leaving it in the queue.
    retryable = True
    hint = (
        "An error in this server, not an answer from PagerDuty. Queued alerts are retried "
        "automatically; if it persists, look for delivery.unexpected_failure in the log."
    )

    def _sentence(self) -> str:
        return f"Unexpected error: {self.message}"
