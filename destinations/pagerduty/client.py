"""Transport only: post one serialized event to PagerDuty and turn the answer into an outcome."""

from __future__ import annotations

import http.client
import json
import logging
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

import requests
import urllib3.exceptions
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import project
from destinations.keys.routing import MASK, scrub_routing_key
from destinations.pagerduty.deadline import Deadline, DeadlineAdapter
from destinations.pagerduty.errors import (
    PagerDutyError,
    Timeout,
    Unreachable,
    error_for_status,
    parse_retry_after,
)
from destinations.pagerduty.events import DEDUP_KEY_MAX_LENGTH

US_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
EU_EVENTS_URL = "https://events.eu.pagerduty.com/v2/enqueue"
REGION_EVENTS_URLS = {"us": US_EVENTS_URL, "eu": EU_EVENTS_URL}

# Characters of the answer kept for the delivery log.
RESPONSE_EXCERPT_MAX = 2000
# PagerDuty answers in a few hundred bytes; reading more only lets a misbehaving proxy fill memory.
RESPONSE_BODY_MAX_BYTES = 64 * 1024
# Each thread has its own client talking to at most a region host and the override host.
POOL_CONNECTIONS = 4
POOL_MAXSIZE = 4
# Longest piece of a transport failure's own text (or a redirect's target) kept in a message.
TRANSPORT_DETAIL_MAX = 300
# PagerDuty sends one or a few; a misbehaving answer must not bloat the delivery log.
ERRORS_KEPT_MAX = 20
# NUL and the lone halves of UTF-16 surrogate pairs: JSON can carry them, no column can store them.
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# The message kept for a 2xx whose JSON is beyond reading (nested too deep for the parser).
UNREADABLE_ANSWER = "unreadable answer"

logger = logging.getLogger("destinations.pagerduty")


def events_url(region: str) -> str:
    """Return the only URL events may be posted to: the operator's override, else the region's."""
    try:
        region_url = REGION_EVENTS_URLS[region]
    except KeyError:
        # A bad region is a data error even when the override would hide it.
        raise ValueError(
            f"Unknown PagerDuty region {region!r}; "
            f"expected one of: {', '.join(REGION_EVENTS_URLS)}."
        ) from None
    return settings.PAGERDUTY_EVENTS_URL or region_url


def user_agent() -> str:
    """Name this product, its version and where it runs, so PagerDuty can tell who is calling."""
    product = project.PRODUCT_NAME.replace(" ", "")
    return f"{product}/{project.__version__} (+{settings.SITE_URL})"


@dataclass(frozen=True)
class Accepted:
    """PagerDuty took the event (any 2xx); 202 means queued, not that an incident exists yet."""

    status_code: int
    message: str
    dedup_key: str
    response_excerpt: str
    duration_ms: int


class _Scrubber:
    """Masks the routing key (and any credentials in the URL) in text that will be kept.

    The key is masked in the forms an echoing proxy sends it back in too: another letter case,
    JSON-escaped, spaced out, or cut short (routing_keys.routing_key_pattern).
    """

    def __init__(self, *, routing_key: str, url: str) -> None:
        self.routing_key = routing_key
        self.replacements: list[tuple[str, str]] = []
        parts = urlsplit(url)
        for secret in (parts.password, parts.query):
            if secret:
                self.replacements.append((secret, MASK))

    def __call__(self, text: str) -> str:
        # The URL's secrets first: a query holding the key is then masked whole.
        for secret, replacement in self.replacements:
            text = text.replace(secret, replacement)
        return scrub_routing_key(text, self.routing_key)


def scrub_secrets(text: str, *, routing_key: str | None) -> str:
    """The text with the routing key masked and any credentials of PAGERDUTY_EVENTS_URL removed."""
    return _Scrubber(routing_key=routing_key or "", url=settings.PAGERDUTY_EVENTS_URL or "")(text)


class PagerDutyClient:
    """Posts serialized events over one reusable connection pool; retry policy is the caller's."""

    def __init__(self, *, adapter: HTTPAdapter | None = None) -> None:
        self.adapter = adapter if adapter is not None else build_adapter()
        # What a requests Session takes from the environment for each URL (proxies, CA bundle),
        # read on the first post to it (see _post).
        self._environment: dict[str, dict] = {}

    def send(self, body: bytes, *, routing_key: str, url: str, timeout: float) -> Accepted:
        """Post the exact bytes of one event and return Accepted, or raise a PagerDutyError."""
        _refuse_foreign_url(url)
        scrub = _Scrubber(routing_key=routing_key, url=url)
        started = time.monotonic()
        with Deadline(timeout) as deadline:
            answer = self._post(body, url=url, timeout=timeout, scrub=scrub, started=started)
            if not isinstance(answer, Unreachable):
                with answer as response:
                    raw_body = _read_body(response)
        if isinstance(answer, Unreachable) and deadline.expired:
            answer = Timeout(
                f"no answer within {timeout:g} seconds ({_where(url)})",
                duration_ms=_elapsed_ms(started),
            )
        if isinstance(answer, Unreachable):
            _log(
                url=url,
                status_code=None,
                outcome=type(answer).__name__,
                duration_ms=answer.duration_ms,
            )
            raise answer
        duration_ms = _elapsed_ms(started)
        outcome = parse_answer(
            status_code=response.status_code,
            reason=response.reason or "",
            headers=response.headers,
            body=raw_body,
            scrub=scrub,
            duration_ms=duration_ms,
        )
        _log(
            url=url,
            status_code=response.status_code,
            outcome=type(outcome).__name__,
            duration_ms=duration_ms,
        )
        if isinstance(outcome, PagerDutyError):
            raise outcome
        return outcome

    def _post(
        self, body: bytes, *, url: str, timeout: float, scrub: Callable[[str], str], started: float
    ) -> requests.Response | Unreachable:
        """Post the body and return the response, or the error for a request that got none."""
        # Straight to the adapter, not through a Session: a Session reads the environment's
        # proxy and CA settings and ~/.netrc again for every post, and looks for cookies and
        # redirects in every answer. That cost a third of the sending threads' CPU, which they
        # spend holding the interpreter the whole worker shares (bench `throughput`). The
        # environment is read once per URL instead; a redirect is a refusal (parse_answer)
        # and PagerDuty sets no cookies; no ~/.netrc credentials go to PagerDuty.
        try:
            environment = self._environment.get(url)
            if environment is None:
                environment = self._environment[url] = (
                    requests.Session().merge_environment_settings(
                        url, proxies={}, stream=True, verify=None, cert=None
                    )
                )
            request = requests.Request(
                "POST",
                url,
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/vnd.pagerduty+json;version=2",
                    "User-Agent": user_agent(),
                },
            ).prepare()
            # Streamed (environment["stream"]), so that at most RESPONSE_BODY_MAX_BYTES of the
            # answer are read.
            return self.adapter.send(request, timeout=timeout, **environment)
        except requests.RequestException as exc:
            # Returned, not raised here: raised outside this block it has no __context__, and
            # the original must not travel with it (it holds the request body, key included).
            proxy = requests.utils.select_proxy(url, (environment or {}).get("proxies") or {})
            return _transport_error(
                exc,
                url=url,
                proxy=proxy,
                timeout=timeout,
                scrub=scrub,
                duration_ms=_elapsed_ms(started),
            )


def build_adapter() -> HTTPAdapter:
    """Make an adapter whose pool is sized for reuse, which never retries on its own, and whose
    connections a Deadline can cut."""
    return DeadlineAdapter(
        pool_connections=POOL_CONNECTIONS,
        pool_maxsize=POOL_MAXSIZE,
        # The worker owns the retry policy (backoff, Retry-After, attempt limits); urllib3 must
        # not resend a POST behind its back. read=False keeps read timeouts as ReadTimeout.
        max_retries=Retry(total=0, read=False, redirect=False),
    )


_local = threading.local()


def get_client() -> PagerDutyClient:
    """Return this thread's client, so each thread reuses its own connections."""
    client = getattr(_local, "client", None)
    if client is None:
        client = _local.client = PagerDutyClient()
    return client


def parse_answer(
    *,
    status_code: int,
    reason: str,
    headers: Mapping[str, str],
    body: bytes,
    scrub: Callable[[str], str],
    duration_ms: int,
) -> Accepted | PagerDutyError:
    """Turn an HTTP answer into Accepted or the PagerDutyError its status calls for."""
    text = scrub(_storable(body.decode("utf-8", errors="replace")))
    excerpt = text[:RESPONSE_EXCERPT_MAX]
    data = _json_object(body)
    unreadable = data is None
    data = data or {}
    message = _text(data.get("message"), scrub)[:RESPONSE_EXCERPT_MAX]

    if 200 <= status_code < 300:
        dedup_key = _text(data.get("dedup_key"), scrub)
        if len(dedup_key) > DEDUP_KEY_MAX_LENGTH:
            # PagerDuty never sends one this long; a cut one would name the wrong incident.
            dedup_key = ""
        # A 2xx without (readable) JSON is still accepted: PagerDuty queued the event, and
        # sending it again for want of a message would page twice.
        if unreadable:
            message = UNREADABLE_ANSWER
        return Accepted(
            status_code=status_code,
            message=message,
            dedup_key=dedup_key,
            response_excerpt=excerpt,
            duration_ms=duration_ms,
        )

    error_class = error_for_status(status_code)
    if not message:
        message = scrub(_storable(reason)) or _status_phrase(status_code)
    if 300 <= status_code < 400:
        location = scrub(_storable(headers.get("Location") or ""))[:TRANSPORT_DETAIL_MAX]
        message += f"; redirect to {location or 'an unnamed place'} not followed"
    raw_errors = data.get("errors")
    if isinstance(raw_errors, str):
        raw_errors = [raw_errors]
    if not isinstance(raw_errors, list):
        raw_errors = []
    errors = [
        scrub(_storable(str(item)))[:RESPONSE_EXCERPT_MAX] for item in raw_errors[:ERRORS_KEPT_MAX]
    ]
    retry_after = parse_retry_after(headers.get("Retry-After")) if status_code == 429 else None
    return error_class(
        message,
        status_code=status_code,
        errors=errors,
        response_excerpt=excerpt,
        duration_ms=duration_ms,
        retry_after=retry_after,
    )


def _refuse_foreign_url(url: str) -> None:
    """Refuse any URL that events_url() could not have returned (no SSRF, whoever the caller)."""
    override = settings.PAGERDUTY_EVENTS_URL
    allowed = {override} if override else set(REGION_EVENTS_URLS.values())
    if url not in allowed:
        host = urlsplit(url).hostname or "?"
        raise ValueError(
            f"Refusing to post to {host}: events go only to the region's PagerDuty URL "
            "or PAGERDUTY_EVENTS_URL (use events_url())."
        )


def _read_body(response: requests.Response) -> bytes:
    """Read at most RESPONSE_BODY_MAX_BYTES of the answer; a body that breaks off reads as is."""
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.iter_content(chunk_size=8192):
            chunks.append(chunk)
            size += len(chunk)
            if size >= RESPONSE_BODY_MAX_BYTES:
                # Closing an unread response drops its connection rather than reusing it.
                break
    except requests.RequestException:
        # The status has arrived and alone decides the outcome; the body is only detail.
        pass
    return b"".join(chunks)[:RESPONSE_BODY_MAX_BYTES]


def _json_object(body: bytes) -> dict[str, object] | None:
    """Return the answer's JSON object ({} when it is not one), or None when it cannot be read."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    except RecursionError:
        # Nested deeper than the parser follows (`[` × 60,000 fits in the body we read). The
        # recursion limit stays as it is: no answer of PagerDuty's comes near it.
        return None
    return data if isinstance(data, dict) else {}


def _text(value: object, scrub: Callable[[str], str]) -> str:
    """Return a scrubbed string field of the answer, or "" when it is missing or not a string."""
    return scrub(_storable(value)) if isinstance(value, str) else ""


def _storable(text: str) -> str:
    """The text with what no database column takes (NUL, lone surrogates) replaced by U+FFFD."""
    # JSON may escape either ("\u0000", "\ud800"); PostgreSQL refuses NUL in text and no
    # database driver encodes a lone surrogate, so the attempt could not be recorded.
    return _UNSTORABLE.sub("\ufffd", text)


def _status_phrase(status_code: int) -> str:
    """Return the standard reason phrase of a status, for answers that explain nothing."""
    try:
        return HTTPStatus(status_code).phrase
    except ValueError:
        return "no explanation"


def _transport_error(
    exc: requests.RequestException,
    *,
    url: str,
    proxy: str | None = None,
    timeout: float,
    scrub: _Scrubber,
    duration_ms: int,
) -> Unreachable:
    """Describe a request that got no answer as Timeout or Unreachable, in a short phrase."""
    causes = list(_causes(exc))
    where = _where(url)
    if proxy and any(isinstance(cause, urllib3.exceptions.ProxyError) for cause in causes):
        where = f"proxy {_where(proxy)}, for {where}"  # host and port only: no credentials
    if isinstance(exc, requests.ConnectTimeout):
        return Timeout(
            f"no connection within {timeout:g} seconds ({where})", duration_ms=duration_ms
        )
    if isinstance(exc, requests.Timeout) or any(
        isinstance(cause, urllib3.exceptions.ReadTimeoutError | TimeoutError) for cause in causes
    ):
        return Timeout(f"no answer within {timeout:g} seconds ({where})", duration_ms=duration_ms)
    return Unreachable(f"{_failure_phrase(causes, scrub)} ({where})", duration_ms=duration_ms)


def _where(url: str) -> str:
    """The host and port of a URL, for messages (never its path or credentials)."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


# First match wins; RemoteDisconnected is itself a ConnectionResetError, so it comes first.
_FAILURE_PHRASES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (http.client.RemoteDisconnected, "connection closed without an answer"),
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    ((urllib3.exceptions.NameResolutionError, socket.gaierror), "host name not found"),
)


def _failure_phrase(causes: list[BaseException], scrub: Callable[[str], str]) -> str:
    """Name why a connection failed in plain words, keeping the details only where they help."""
    # Through a proxy (HTTPS_PROXY and the like) it is the proxy that refused or reset, or could
    # not be found: said first, or an operator looks for the fault at PagerDuty's end.
    if any(isinstance(cause, urllib3.exceptions.ProxyError) for cause in causes):
        inner = [
            cause
            for cause in causes
            if not isinstance(
                cause, urllib3.exceptions.ProxyError | urllib3.exceptions.MaxRetryError
            )
            and not isinstance(cause, requests.RequestException)
        ]
        return "the proxy failed: " + (
            _failure_phrase(inner, scrub) if inner else "no reason given"
        )
    for cause in causes:
        if isinstance(cause, ssl.SSLError | requests.exceptions.SSLError):
            # Deepest TLS error first: its text names the reason (an expired certificate, say).
            deepest = [c for c in causes if isinstance(c, ssl.SSLError)] or [cause]
            return "TLS failed: " + scrub(str(deepest[-1]))[:TRANSPORT_DETAIL_MAX]
    for kind, phrase in _FAILURE_PHRASES:
        if any(isinstance(cause, kind) for cause in causes):
            return phrase
    return scrub(str(causes[-1]) or type(causes[-1]).__name__)[:TRANSPORT_DETAIL_MAX]


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """Yield an exception and everything it wraps (args, urllib3's reason, cause, context)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [arg for arg in current.args if isinstance(arg, BaseException)]
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException):
            inner.append(reason)
        inner += [e for e in (current.__cause__, current.__context__) if e is not None]
        pending.extend(inner)


def _elapsed_ms(started: float) -> int:
    """Return the whole milliseconds since a time.monotonic() reading."""
    return round((time.monotonic() - started) * 1000)


def _log(*, url: str, status_code: int | None, outcome: str, duration_ms: int) -> None:
    """Record one post with its host and outcome only: never the body, the key or the full URL."""
    if not logger.isEnabledFor(logging.DEBUG):
        return  # (spares the URL's parsing on every post)
    logger.debug(
        "pagerduty_event_posted host=%s status=%s outcome=%s duration_ms=%d",
        urlsplit(url).hostname,
        status_code,
        outcome,
        duration_ms,
    )
