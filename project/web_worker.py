"""gunicorn's threaded worker with a read timeout, so a client that stops sending frees its thread.

gunicorn's gthread worker waits for a connection's first bytes without holding a thread, but from
then on a thread reads the request with blocking reads that never time out: a client that sends
half its headers, or declares a longer Content-Length than it sends, holds that thread until it
hangs up, and gthread's `--timeout` (a heartbeat of the worker's main loop) never fires for it.
gunicorn has no setting for a read timeout, so this worker adds one: every blocking read of a
connection gives up after WEB_READ_TIMEOUT_SECONDS without a byte. The request's thread is then
free again: a half-sent request line or header is dropped, and a half-sent body reaches the view
as an unreadable body (the API answers 400, "The body could not be read completely").

This bounds how long one silent client holds a thread; a client that trickles one byte at a time
is bounded only by gunicorn's header size limits. Enough threads (WEB_THREADS) keep a handful of
such clients from stalling the site; a buffering reverse proxy in front is what stops many.
That proxy also ends TLS: with gunicorn's own TLS (--certfile) a connection becomes an SSL socket
of the standard library's, and this timeout would no longer apply to it.
"""

import socket

from django.conf import settings
from gunicorn.workers import gthread


class ReadTimeoutSocket(socket.socket):
    """A connection whose blocking mode is a timeout mode: no read waits for ever."""

    __slots__ = ()
    timeout_seconds: float = 30.0

    def setblocking(self, flag: bool) -> None:
        # gthread switches a connection to blocking mode before each request it reads; that
        # mode is this timeout instead. Non-blocking mode (for its poller) is left as it is.
        if flag:
            self.settimeout(self.timeout_seconds)
        else:
            super().setblocking(False)


class ThreadWorker(gthread.ThreadWorker):
    """gthread, whose connections time out when their client stops sending."""

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # The settings are loaded with the application.
        ReadTimeoutSocket.timeout_seconds = settings.WEB_READ_TIMEOUT_SECONDS

    def handle(self, conn):
        # A connection reaches handle() first straight from accept(), before the poller ever
        # holds it, so it is adopted here once, keeping its file descriptor.
        if not isinstance(conn.sock, ReadTimeoutSocket):
            conn.sock = ReadTimeoutSocket(fileno=conn.sock.detach())
        return super().handle(conn)
