"""Waking idle workers at once: NOTIFY where deliveries become due, LISTEN in each worker.

PostgreSQL only; SQLite has no such channel, and its workers poll (DELIVERY_POLL_INTERVAL_SECONDS).
Polling stays on PostgreSQL too, as the fallback for a notification lost with its connection.
"""

import logging
import threading
from collections.abc import Callable

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections

logger = logging.getLogger("destinations.worker")

# One channel per database (PostgreSQL's notifications do not cross databases), so two
# installations sharing a server never wake each other.
CHANNEL = "detection_destinations_due"
# How long the listening thread blocks before it looks whether the worker is stopping: the
# most a stop waits for it. A blocked wait costs no CPU, so a short slice costs nothing.
LISTEN_SLICE_SECONDS = 0.2
# The pause before listening again after the connection was lost (a restarted database, a
# terminated backend); polling delivers meanwhile.
RELISTEN_SECONDS = 1.0


def notify_workers() -> None:
    """Tell listening workers that deliveries are due now; call it in the transaction queuing them.

    The NOTIFY is sent inside the transaction, not from transaction.on_commit(): PostgreSQL
    delivers it when, and only if, that transaction commits, and folds repeats within it into
    one, so a worker never wakes for rows it cannot see yet, nor for a rollback. It costs one
    statement in a transaction already open, where on_commit would cost a second round trip
    (and a transaction of its own) after the commit, and would be lost if the process died
    between the two. Outside a transaction it is sent at once, which is as right.
    """
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {CHANNEL}")


def can_listen() -> bool:
    """Whether workers listen (PostgreSQL, DELIVERY_LISTEN on), or only poll (SQLite)."""
    return connection.vendor == "postgresql" and settings.DELIVERY_LISTEN


class Listener:
    """A thread holding a connection of its own that LISTENs, calling `wake` on each notification.

    When the connection is lost it says so, keeps trying to listen again every RELISTEN_SECONDS
    (the worker polls meanwhile), and wakes the worker once listening again, since a notification
    sent while it was away is lost.
    """

    def __init__(self, wake: Callable[[], None], *, alias: str = DEFAULT_DB_ALIAS) -> None:
        self._wake = wake
        self._alias = alias
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deliver-listen", daemon=True)
        # Set while a LISTEN is in place, for the worker's tests and its log.
        self.listening = threading.Event()
        # The listening connection's backend pid, while listening.
        self.backend_pid: int | None = None
        # Whether the last connection was lost (so the next LISTEN says "again" and wakes).
        self._lost = False

    def start(self) -> "Listener":
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and close the connection (within LISTEN_SLICE_SECONDS)."""
        self._stopping.set()
        self._thread.join(timeout=LISTEN_SLICE_SECONDS + 5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._listen()
            except Exception as error:
                if not self._lost:
                    logger.warning(
                        "worker.listen_lost error=%s; polling until listening again",
                        type(error).__name__,
                    )
                self._lost = True
            finally:
                self.listening.clear()
                self.backend_pid = None
            self._stopping.wait(RELISTEN_SECONDS)

    def _listen(self) -> None:
        # A connection of this thread's own, made from the same settings as the worker's, in
        # autocommit (Django's default): notifications arrive between transactions only.
        database = connections.create_connection(self._alias)
        try:
            database.ensure_connection()
            raw = database.connection
            raw.execute(f"LISTEN {CHANNEL}")
            self.backend_pid = raw.info.backend_pid
            self.listening.set()
            if self._lost:
                logger.info("worker.listening channel=%s (again)", CHANNEL)
                self._lost = False
                self._wake()  # whatever was queued while nobody listened
            else:
                logger.info("worker.listening channel=%s", CHANNEL)
            while not self._stopping.is_set():
                for _ in raw.notifies(timeout=LISTEN_SLICE_SECONDS):
                    self._wake()
        finally:
            database.close()
