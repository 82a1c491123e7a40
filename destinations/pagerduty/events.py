"""PagerDuty Events API v2 events built from plain run facts: pure functions, no Django, no I/O."""

from __future__ import annotations

import hashlib
import json
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

# PagerDuty's limits (tests/support/fake_pagerduty/SOURCE.md, from /shared/pagerduty/SOURCE.md).
SUMMARY_MAX_LENGTH = 1024
DEDUP_KEY_MAX_LENGTH = 255
EVENT_MAX_BYTES = 512_000
ROUTING_KEY_LENGTH = 32

# Errors of a run beyond this many are counted, not sent: an on-call reader needs the first few.
MAX_ERRORS_SENT = 10
# The longest replay link the intake accepts; longer than a summary, which then cuts it (§5).
REPLAY_LINK_MAX_LENGTH = 8192

TRUNCATED_KEY = "_truncated"
# Set on an event a failed delivery handed to its destination's fallback: whence, and why.
FALLBACK_FROM_KEY = "_fallback_from"
# Characters of the failure kept in that note: the delivery log keeps the whole of it.
FALLBACK_REASON_MAX_LENGTH = 300
ERRORS_TOTAL_KEY = "errors_total"
ELLIPSIS = "…"

SEVERITY_MAP = {"CRITICAL": "critical", "HIGH": "error", "MEDIUM": "warning", "LOW": "info"}
PAGERDUTY_SEVERITIES = ("critical", "error", "warning", "info")
# The outcomes that page anyone; NOT_MATCHED runs are recorded and nothing is sent.
PAGEABLE_OUTCOMES = ("MATCHED", "ERROR")

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
        FALLBACK_FROM_KEY,
    }
)

# When a link is too long for any summary and must be cut, the name keeps this much of itself:
# a summary that no longer says which detection fired helps nobody.
SUMMARY_MIN_NAME_LENGTH = 32

# The one JSON spelling used for sizes and for the posted bytes, so the two always agree.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
# A placeholder key of the right length: only its size matters when measuring.
_SIZING_ROUTING_KEY = "x" * ROUTING_KEY_LENGTH

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
    summary_template: str = ""  # "" = the standard summary; see SUMMARY_PLACEHOLDERS
    destination_name: str = ""  # what {destination} says


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
    if outcome not in PAGEABLE_OUTCOMES:
        raise ValueError(
            f"Only {' and '.join(PAGEABLE_OUTCOMES)} runs get an event, not {outcome}."
        )
    severity = str(run.severity)
    if severity not in SEVERITY_MAP:
        raise ValueError(f"Unknown detection severity {severity!r}.")
    link = run.replay_link if run.replay_link and run.replay_link.strip() else None
    source = link or default_source
    if not source or not source.strip():
        raise ValueError("default_source must not be blank: PagerDuty requires a source.")
    payload = {
        "summary": _run_summary(run, options, severity=severity, link=link),
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


def build_fallback_event(event: dict, *, destination_name: str, reason: str) -> dict:
    """The same event for a destination's fallback, saying in its details whence and why."""
    if "payload" not in event:
        return dict(event)  # a resolve: it has no details to carry the note
    payload = dict(event["payload"])
    payload["custom_details"] = {
        **(payload.get("custom_details") or {}),
        FALLBACK_FROM_KEY: {
            "destination": destination_name,
            "reason": _shorten(reason, FALLBACK_REASON_MAX_LENGTH),
        },
    }
    # Re-fitted: the note is small, but an event already at the size limit has no room for it.
    return _fit_to_size({**event, "payload": payload})


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


# Summary templates (§10): named placeholders filled with plain text, nothing evaluated.

SUMMARY_PLACEHOLDERS = (
    "severity",
    "detection_name",
    "replay_link",
    "outcome",
    "match_count",
    "run_type",
    "destination",
)
_PLACEHOLDER_LIST = ", ".join("{" + name + "}" for name in SUMMARY_PLACEHOLDERS)
_ACCESS = frozenset(".[]")

type TemplatePieces = list[tuple[str, str | None]]


class SummaryTemplateError(ValueError):
    """A summary template that cannot be used, with one sentence saying why."""


def parse_summary_template(template: str) -> TemplatePieces:
    """Split a template into (literal text, placeholder name or None) pairs, or raise.

    Only the bare names of SUMMARY_PLACEHOLDERS are allowed: attribute or index access,
    conversions (!r) and format specs (:>10) are refused, so filling one in can only ever
    insert a value's text.
    """
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        raise SummaryTemplateError(
            "The template has a { or } that opens or closes no placeholder; "
            "write {{ or }} for a literal brace."
        ) from None
    pieces: TemplatePieces = []
    for literal, name, spec, conversion in parts:
        if name is None:
            pieces.append((literal, None))
            continue
        if name not in SUMMARY_PLACEHOLDERS:
            base = name.split(".", 1)[0].split("[", 1)[0]
            if base in SUMMARY_PLACEHOLDERS and _ACCESS & set(name):
                raise SummaryTemplateError(
                    f"Placeholder {{{name}}} is refused: placeholders are plain names, without "
                    f"attribute or index access. Write {{{base}}}."
                )
            shown = f"{{{name}}}" if name else "{}"
            raise SummaryTemplateError(
                f"Unknown placeholder {shown}. Use one of {_PLACEHOLDER_LIST}, "
                "or write {{ and }} for literal braces."
            )
        if conversion or spec:
            extra = f"a conversion (!{conversion})" if conversion else f"a format (:{spec})"
            raise SummaryTemplateError(
                f"Placeholder {{{name}}} has {extra}, which is not supported. Write {{{name}}}."
            )
        pieces.append((literal, name))
    return pieces


def _run_summary(
    run: RunFacts, options: DestinationOptions, *, severity: str, link: str | None
) -> str:
    """The destination's templated summary, or the standard one when it has no usable template."""
    template = str(options.summary_template or "")
    if template.strip():
        try:
            pieces = parse_summary_template(template)
        except SummaryTemplateError:
            # Refused on save; one stored some other way must not stop the page.
            pieces = None
        if pieces is not None:
            values = {
                "severity": severity,
                "outcome": str(run.outcome),
                "match_count": str(run.match_count),
                "run_type": str(run.run_type),
                "destination": str(options.destination_name or ""),
            }
            summary = _templated_summary(
                pieces, values=values, name=run.detection_name, link=link or ""
            )
            # PagerDuty refuses a blank summary (a template of only {replay_link}, and no link).
            if summary.strip():
                return summary
    return _trigger_summary(severity=severity, name=run.detection_name, link=link)


def _templated_summary(
    pieces: TemplatePieces, *, values: dict[str, str], name: str, link: str
) -> str:
    """Fill the template in at most 1024 characters: the name shrinks first, the link last."""

    def spell(name_text: str, link_text: str) -> str:
        filled = {**values, "detection_name": name_text, "replay_link": link_text}
        return "".join(
            literal + ("" if field is None else filled[field]) for literal, field in pieces
        )

    summary = spell(name, link)
    if len(summary) <= SUMMARY_MAX_LENGTH:
        return summary
    fields = [field for _, field in pieces]
    names, links = fields.count("detection_name"), fields.count("replay_link")
    fixed = len(spell("", ""))
    if names:
        name_room = (SUMMARY_MAX_LENGTH - fixed - links * len(link)) // names
        if name_room >= min(len(name), 1):
            return spell(_shorten(name, name_room), link)
    # As in the standard summary: a link that cannot fit is cut, the name keeping some of itself.
    short_name = _shorten(name, SUMMARY_MIN_NAME_LENGTH)
    if links and link:
        link_room = (SUMMARY_MAX_LENGTH - fixed - names * len(short_name)) // links
        if link_room >= 1:
            return spell(short_name, _shorten(link, link_room))
    # The template's own text and other values are longer than a summary may be.
    return _shorten(spell(short_name, link), SUMMARY_MAX_LENGTH)


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
        details["errors"] = list(run.errors[:MAX_ERRORS_SENT])
        # The engine's own count: the stored list may hold only the first errors it sent.
        total = max(len(run.errors), run.errors_total or 0)
        if total > MAX_ERRORS_SENT:
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


def _fit_to_size(event: dict) -> dict:
    """Return the event, its largest custom details shrunk if it would exceed EVENT_MAX_BYTES."""
    # Imported here, not at the top: truncation measures with this module's encoder and limits,
    # so it imports this module.
    from .truncation import fit_to_size

    return fit_to_size(event)
