"""A deadline on PagerDuty's whole answer: one watchdog thread cuts connections that overrun."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

# The timeout given to requests bounds each socket read, not the whole answer: a server that
# drips its answer out a byte at a time would hold a worker (past its lease, so the event is sent
# twice). A deadline per post cuts the connection when the destination's timeout is up; requests
# has no such total timeout of its own, hence these few classes.
_current = threading.local()


class Deadline:
    """While active in a thread, shuts down that thread's PagerDuty connection when time is up."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self.due = time.monotonic() + seconds
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()

    def __enter__(self) -> Deadline:
        _current.deadline = self
        _watchdog.add(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        _watchdog.discard(self)
        _current.deadline = None

    def watch(self, connection: HTTPConnection) -> None:
        """Note the connection a request is about to use (cut at once if time is already up)."""
        with self._lock:
            self._connection = connection
            expired = self.expired
        if expired:
            _shut_down(connection)

    def expire(self) -> None:
        """Mark the time as up and cut the connection in use, if any."""
        with self._lock:
            self.expired = True
            connection = self._connection
        if connection is not None:
            _shut_down(connection)


class _Watchdog:
    """One thread per process that expires deadlines, instead of a timer thread per post."""

    def __init__(self) -> None:
        self._active: set[Deadline] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        # When the thread wakes next on its own: a deadline due later needs no wake-up call.
        self._wakes_at = math.inf

    def add(self, deadline: Deadline) -> None:
        with self._changed:
            self._active.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="pagerduty-deadlines", daemon=True
                )
                self._thread.start()
            # Posts to one destination share its timeout, so each new deadline is due after
            # those already waited for: waking the thread on every post (to find nothing due)
            # cost the sending threads a hand-over of the interpreter each (bench `throughput`).
            if deadline.due < self._wakes_at:
                self._wakes_at = deadline.due
                self._changed.notify()

    def discard(self, deadline: Deadline) -> None:
        with self._changed:
            self._active.discard(deadline)

    def _run(self) -> None:
        while True:
            with self._changed:
                now = time.monotonic()
                due = [deadline for deadline in self._active if deadline.due <= now]
                self._active.difference_update(due)
                self._wakes_at = min((d.due for d in self._active), default=math.inf)
                if not due:
                    self._changed.wait(None if self._wakes_at == math.inf else self._wakes_at - now)
            for deadline in due:
                deadline.expire()


_watchdog = _Watchdog()


def _shut_down(connection: HTTPConnection) -> None:
    # shutdown() wakes the sending thread from its blocking read; urllib3 then drops the
    # connection instead of reusing it.
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Lets the thread's active deadline know which connection its request uses."""

    def request(self, *args, **kwargs):
        deadline = getattr(_current, "deadline", None)
        if deadline is not None:
            deadline.watch(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPConnection(_Watched, HTTPConnection):
    pass


class _WatchedHTTPSConnection(_Watched, HTTPSConnection):
    pass


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class DeadlineAdapter(HTTPAdapter):
    """An adapter whose connections a Deadline can cut."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": _WatchedHTTPConnectionPool,
            "https": _WatchedHTTPSConnectionPool,
        }
