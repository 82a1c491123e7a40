"""A fake PagerDuty Events API v2 server: real HTTP on 127.0.0.1, recording, faults on cue."""

from __future__ import annotations

import contextlib
import json
import random
import selectors
import socket
import socketserver
import struct
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

from .validation import validate_event

EVENTS_PATH = "/v2/enqueue"
JSON_TYPE = "application/json"
HTML_TYPE = "text/html; charset=utf-8"
TEXT_TYPE = "text/plain; charset=utf-8"
JSON_PARSE_ERROR = "JSON parse error"

_THROTTLED = {
    "status": "throttle event",
    "message": "Requests for this service are arriving too quickly. Please retry later.",
}
_REFUSALS: dict[int, dict[str, Any]] = {
    400: {
        "status": "invalid event",
        "message": "Event object is invalid",
        "errors": ["Invalid routing key"],
    },
    401: {"status": "unauthorized", "message": "Invalid routing key"},
    403: {"status": "forbidden", "message": "The integration for this routing key is disabled"},
    404: {"status": "not found", "message": "No integration found for this routing key"},
}


def _reason(code: int) -> str:
    """Give the reason phrase for a status code, or a neutral one for codes outside the registry."""
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


def _json_bytes(value: object) -> bytes:
    """Encode a body compactly, as PagerDuty does."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _default_status_body(code: int) -> tuple[bytes, str]:
    """Give the body PagerDuty (or the load balancer in front of it) sends with a status."""
    if code == HTTPStatus.TOO_MANY_REQUESTS:
        return _json_bytes(_THROTTLED), JSON_TYPE
    if code == HTTPStatus.BAD_REQUEST:
        body = {"status": "invalid event", "message": "Event object is invalid", "errors": []}
        return _json_bytes(body), JSON_TYPE
    if code in (502, 503, 504):
        # Gateway errors come from the edge, not the API, so they are HTML, not JSON.
        html = f"<html><body><h1>{code} {_reason(code)}</h1></body></html>\n"
        return html.encode(), HTML_TYPE
    if code >= 500:
        return _json_bytes({"status": "error", "message": "Internal server error"}), JSON_TYPE
    if 200 <= code < 300:
        return _json_bytes({"status": "success", "message": "Event processed"}), JSON_TYPE
    return _json_bytes({"status": _reason(code).lower(), "message": _reason(code)}), JSON_TYPE


def _guess_type(body: bytes) -> str:
    """Pick a Content-Type for a body given without one."""
    try:
        json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json follows
        return HTML_TYPE if body.lstrip().startswith(b"<") else TEXT_TYPE
    return JSON_TYPE


@dataclass(frozen=True)
class Fault:
    """One way the fake misbehaves for a request; build it with the class methods."""

    kind: str
    code: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    seconds: float = 0.0

    @classmethod
    def status(
        cls,
        code: int,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
    ) -> Fault:
        """Answer with this status, extra headers, and PagerDuty's body unless one is given."""
        if body is None:
            raw, content_type = _default_status_body(code)
        else:
            if isinstance(body, bytes):
                raw = body
            elif isinstance(body, str):
                raw = body.encode()
            else:
                raw = _json_bytes(body)
            content_type = _guess_type(raw)
        extra = dict(headers or {})
        if not any(name.lower() == "content-type" for name in extra):
            extra = {"Content-Type": content_type, **extra}
        return cls("status", code=code, headers=tuple(extra.items()), body=raw)

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        """Wait this long, then answer normally."""
        return cls("delay", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        """Read the request, then abort the connection with a TCP RST."""
        return cls("reset")

    @classmethod
    def drop(cls) -> Fault:
        """Read the request, then close the connection without answering."""
        return cls("drop")

    @classmethod
    def malformed_success(cls) -> Fault:
        """Answer 202 with a body that is not JSON."""
        return cls(
            "malformed_success",
            code=HTTPStatus.ACCEPTED,
            headers=(("Content-Type", HTML_TYPE),),
            body=b"<html><body>Event processed</body></html>\n",
        )


class Headers(dict[str, str]):
    """Request headers as a plain dict whose lookups ignore case (keys are kept lower case)."""

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        for name, value in items:
            key = name.lower()
            # Repeated headers fold into one, as RFC 9110 allows for list-valued fields.
            if key in self:
                value = f"{super().__getitem__(key)}, {value}"
            super().__setitem__(key, value)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        """Look a header up by any spelling of its name."""
        return super().get(key.lower(), default)


@dataclass
class Received:
    """One request as the fake saw it and what it answered."""

    json: dict[str, Any] | None
    raw: bytes
    headers: Headers
    status: int | None
    problems: list[str]
    at: float
    monotonic: float
    method: str = "POST"
    path: str = EVENTS_PATH
    fault: Fault | None = None

    @property
    def accepted(self) -> bool:
        """Tell whether PagerDuty would have ingested this event."""
        return (
            self.status is not None
            and 200 <= self.status < 300
            and self.json is not None
            and not self.problems
        )


@dataclass
class _Injected:
    """A queued fault and how many more requests it may hit."""

    fault: Fault
    remaining: int | None
    probability: float
    rng: random.Random = field(repr=False)


class _Handler(BaseHTTPRequestHandler):
    """Serve one connection; every answer leaves in a single socket write."""

    protocol_version = "HTTP/1.1"
    server_version = "fake-pagerduty"
    # Small separate writes stall on Nagle plus delayed ACK; one write with no delay does not.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the records are the log."""

    def do_POST(self) -> None:
        """Answer an event (or anything else posted)."""
        self._serve()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Refuse a request that could not be parsed, in one write, and hang up."""
        self.close_connection = True
        body = _json_bytes({"status": "error", "message": message or _reason(code)})
        self._send(code, body, (("Content-Type", JSON_TYPE),))

    def _serve(self) -> None:
        raw = self._read_body()
        if raw is None:
            return
        fake = self.server.fake
        record, fault, generation = fake._arrive(
            method=self.command,
            path=urlsplit(self.path).path,
            raw=raw,
            headers=Headers(self.headers.items()),
        )
        pause = fake.latency + (fault.seconds if fault is not None else 0.0)
        if pause > 0 and fake._stopping.wait(pause):
            self.close_connection = True
            return
        if fault is not None and fault.kind in ("reset", "drop"):
            self._hang_up(reset=fault.kind == "reset")
            return
        status, body, headers = fake._answer(record, fault, generation)
        self._send(status, body, headers)

    def _read_body(self) -> bytes | None:
        """Read the whole request body, or answer/close and return None when that fails."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length_header = self.headers.get("Content-Length")
        if length_header is None:
            return b""
        try:
            length = int(length_header)
            if length < 0:
                raise ValueError(length)
        except ValueError:
            self.send_error(HTTPStatus.BAD_REQUEST, "Bad Content-Length")
            return None
        body = self.rfile.read(length)
        if len(body) < length:
            self.close_connection = True
            return None
        return body

    def _read_chunked(self) -> bytes | None:
        """Read a chunked body (RFC 9112 section 7.1), trailers ignored."""
        chunks = []
        while True:
            line = self.rfile.readline(65537)
            if not line:
                self.close_connection = True
                return None
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                self.send_error(HTTPStatus.BAD_REQUEST, "Bad chunk size")
                return None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(chunks)
            chunk = self.rfile.read(size)
            self.rfile.readline(3)
            if len(chunk) < size:
                self.close_connection = True
                return None
            chunks.append(chunk)

    def _send(self, status: int, body: bytes, headers: Iterable[tuple[str, str]]) -> None:
        """Write status line, headers and body as one bytes object in one call."""
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Date: {formatdate(usegmt=True)}",
            f"Server: {self.server_version}",
        ]
        names = set()
        for name, value in headers:
            names.add(name.lower())
            lines.append(f"{name}: {value}")
            if name.lower() == "connection" and value.lower() == "close":
                self.close_connection = True
        if "content-length" not in names:
            lines.append(f"Content-Length: {len(body)}")
        if self.close_connection and "connection" not in names:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        try:
            self.wfile.write(head if self.command == "HEAD" else head + body)
        except OSError:
            self.close_connection = True

    def _hang_up(self, *, reset: bool) -> None:
        """Close without answering: politely (FIN) or abortively (RST)."""
        self.close_connection = True
        if reset:
            # Linger on with a zero timeout turns close() into an abort that sends RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # The read file holds a reference that would defer the real close (and a later
            # shutdown() would send FIN first), so release it and close the socket right now.
            self.rfile.close()
            self.connection.close()


class _HTTPServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """A thread per connection, daemon threads, a deep accept queue."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024
    # handle_request() is only called once the selector saw a waiting connection.
    timeout = 0

    def __init__(self, address: tuple[str, int], fake: FakePagerDuty) -> None:
        self.fake = fake
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)
        # Never block in accept() if a client gave up between select() and accept().
        self.socket.setblocking(False)

    def track(self, connection: socket.socket) -> None:
        """Remember an open connection so stop() can end it."""
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        """Forget a connection that has closed."""
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        """End every open connection, which lets the threads serving them finish."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that went away; report anything else."""
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class FakePagerDuty:
    """A PagerDuty Events API v2 stand-in on 127.0.0.1 that records requests and injects faults."""

    def __init__(self, *, latency: float = 0.0, port: int = 0) -> None:
        self.latency = latency
        self._port = port
        self._condition = threading.Condition()
        self._received: list[Received] = []
        self._accepted_count = 0
        # Bumped by reset(), so an answer still in flight is not counted into the fresh records.
        self._generation = 0
        self._faults: deque[_Injected] = deque()
        self._refused: dict[str, int] = {}
        self._stopping = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # Life cycle

    def start(self) -> Self:
        """Listen and serve in a background thread; a restart listens on the same port again."""
        if self._server is not None:
            raise RuntimeError("the fake PagerDuty server is already running")
        server = _HTTPServer(("127.0.0.1", self._port), self)
        self._port = server.server_address[1]
        self._stopping.clear()
        self._wake = socket.socketpair()
        self._server = server
        self._thread = threading.Thread(
            target=self._serve_forever,
            args=(server, self._wake[0]),
            name=f"fake-pagerduty:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and end open connections, without waiting for requests in progress."""
        server, thread, wake = self._server, self._thread, self._wake
        if server is None or thread is None or wake is None:
            return
        self._stopping.set()
        wake[1].send(b"x")
        thread.join()
        server.server_close()
        server.close_connections()
        for end in wake:
            end.close()
        self._server = self._thread = self._wake = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @staticmethod
    def _serve_forever(server: _HTTPServer, wake: socket.socket) -> None:
        """Accept connections until woken, so stop() needs no polling interval."""
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ)
            selector.register(wake, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is wake:
                        return
                    server.handle_request()

    @property
    def port(self) -> int:
        """The port the server listens on (known once started)."""
        if not self._port:
            raise RuntimeError("start the fake PagerDuty server first")
        return self._port

    @property
    def url(self) -> str:
        """The events URL to post to."""
        return f"http://127.0.0.1:{self.port}{EVENTS_PATH}"

    # What was received

    @property
    def received(self) -> list[Received]:
        """Every request so far, in arrival order."""
        with self._condition:
            return list(self._received)

    @property
    def accepted(self) -> list[Received]:
        """The requests answered 2xx that carried a valid event, in arrival order."""
        with self._condition:
            return [record for record in self._received if record.accepted]

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events PagerDuty would have ingested, in arrival order."""
        return [record.json for record in self.accepted if record.json is not None]

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """Block until at least `count` events were accepted; False if the timeout came first."""
        with self._condition:
            return self._condition.wait_for(lambda: self._accepted_count >= count, timeout)

    def reset(self) -> None:
        """Forget records, queued faults and refused keys."""
        with self._condition:
            self._received.clear()
            self._accepted_count = 0
            self._generation += 1
            self._faults.clear()
            self._refused.clear()

    # Misbehaviour

    def inject(
        self,
        fault: Fault,
        *,
        times: int | None = 1,
        probability: float = 1.0,
        seed: int = 0,
    ) -> None:
        """Queue a fault for the next events; with probability < 1 only hits count to `times`."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for until clear_faults()")
        if not 0.0 <= probability <= 1.0:
            raise ValueError("probability must be between 0 and 1")
        with self._condition:
            self._faults.append(_Injected(fault, times, probability, random.Random(seed)))

    def clear_faults(self) -> None:
        """Drop every queued fault."""
        with self._condition:
            self._faults.clear()

    def refuse_key(self, routing_key: str, status: int = 400) -> None:
        """Answer valid events carrying this routing key with `status` and a PagerDuty-like body."""
        if not 400 <= status <= 599:
            raise ValueError("a refusal is a 4xx or 5xx status")
        with self._condition:
            self._refused[routing_key] = status

    # Used by the request handler

    def _arrive(
        self, *, method: str, path: str, raw: bytes, headers: Headers
    ) -> tuple[Received, Fault | None, int]:
        """Record a fully read request and pick the fault, if any, that it meets."""
        at, monotonic = time.time(), time.monotonic()
        is_event = method == "POST" and path == EVENTS_PATH
        event: dict[str, Any] | None = None
        if not is_event:
            problems = [f"{method} {path} is not the Events API v2 endpoint {EVENTS_PATH}"]
        else:
            try:
                # NaN and Infinity are not JSON, whatever Python's parser tolerates by default.
                parsed = json.loads(raw, parse_constant=_reject_constant)
            except ValueError:
                problems = [JSON_PARSE_ERROR]
            else:
                if isinstance(parsed, dict):
                    event = parsed
                    problems = validate_event(parsed, raw_size=len(raw))
                else:
                    problems = ["event must be a JSON object"]
        record = Received(
            json=event,
            raw=raw,
            headers=headers,
            status=None,
            problems=problems,
            at=at,
            monotonic=monotonic,
            method=method,
            path=path,
        )
        with self._condition:
            self._received.append(record)
            record.fault = self._next_fault() if is_event else None
            generation = self._generation
        return record, record.fault, generation

    def _next_fault(self) -> Fault | None:
        """Take the fault at the head of the queue if it hits this request (lock held)."""
        if not self._faults:
            return None
        head = self._faults[0]
        if head.probability < 1.0 and head.rng.random() >= head.probability:
            return None
        if head.remaining is not None:
            head.remaining -= 1
            if head.remaining == 0:
                self._faults.popleft()
        return head.fault

    def _answer(
        self, record: Received, fault: Fault | None, generation: int
    ) -> tuple[int, bytes, tuple[tuple[str, str], ...]]:
        """Decide the answer to a recorded request and note its status."""
        json_header = (("Content-Type", JSON_TYPE),)
        if fault is not None and fault.code is not None:
            status, body, headers = fault.code, fault.body, fault.headers
        elif record.path != EVENTS_PATH:
            status, headers = HTTPStatus.NOT_FOUND, json_header
            body = _json_bytes({"status": "not found", "message": "Not Found"})
        elif record.method != "POST":
            status, headers = HTTPStatus.METHOD_NOT_ALLOWED, (*json_header, ("Allow", "POST"))
            body = _json_bytes({"status": "method not allowed", "message": "Use POST"})
        elif record.problems:
            status, headers = HTTPStatus.BAD_REQUEST, json_header
            body = _json_bytes(
                {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": record.problems,
                }
            )
        elif (refusal := self._refusal(record)) is not None:
            status, headers = refusal, json_header
            body = _json_bytes(_REFUSALS.get(refusal, _default_refusal(refusal)))
        else:
            assert record.json is not None
            dedup_key = record.json.get("dedup_key") or uuid.uuid4().hex
            status, headers = HTTPStatus.ACCEPTED, json_header
            body = _json_bytes(
                {"status": "success", "message": "Event processed", "dedup_key": dedup_key}
            )
        with self._condition:
            record.status = int(status)
            if record.accepted and generation == self._generation:
                self._accepted_count += 1
                self._condition.notify_all()
        return int(status), body, headers

    def _refusal(self, record: Received) -> int | None:
        """Give the status refusing this event's routing key, if it is refused."""
        routing_key = (record.json or {}).get("routing_key")
        with self._condition:
            return self._refused.get(routing_key) if isinstance(routing_key, str) else None


def _default_refusal(status: int) -> dict[str, Any]:
    """Word a refusal for a status without a PagerDuty-specific body."""
    return {"status": _reason(status).lower(), "message": "Routing key refused"}


def _reject_constant(name: str) -> Any:
    """Refuse the non-JSON constants NaN, Infinity and -Infinity."""
    raise ValueError(f"{name} is not JSON")
