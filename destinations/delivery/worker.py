"""The delivery worker: claim due deliveries, send them on a pool of threads, record them."""

import contextlib
import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import timezone

from ..keys.routing import readable_key
from ..models import DeliveryStatus
from .attempts import (
    FinishedAttempt,
    record_attempt,
    record_attempts,
    send_event,
    unexpected_failure_result,
)
from .claims import Claim, claim_due
from .wakeup import Listener, can_listen

logger = logging.getLogger("destinations.worker")


def send_claimed(claim: Claim, *, now: Callable[[], datetime] = timezone.now) -> FinishedAttempt:
    """Send one claimed delivery, touching no database; the attempt is for the caller to record.

    Never raises: whatever goes wrong, from reading the key to parsing the answer, is the result.
    """
    delivery = claim.delivery
    result = send_event(
        delivery.event,
        delivery.destination,
        read_routing_key=functools.partial(readable_key, delivery.routing_key_token),
    )
    return FinishedAttempt(delivery, result, now(), claim.lease_token)


@dataclass
class WorkerStats:
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    errors: int = 0

    def count(self, status: str) -> None:
        if status == DeliveryStatus.DELIVERED:
            self.delivered += 1
        elif status == DeliveryStatus.FAILED:
            self.failed += 1
        else:
            self.retrying += 1

    def __str__(self) -> str:
        return f"delivered {self.delivered}, retrying {self.retrying}, failed {self.failed}" + (
            f", worker errors {self.errors}" if self.errors else ""
        )


class _Sends:
    """Claimed deliveries handed to the sending threads, until their attempts are taken back."""

    def __init__(self, pool: ThreadPoolExecutor, *, now: Callable[[], datetime]) -> None:
        self._pool = pool
        self._now = now
        self._claims: dict[Future, Claim] = {}
        self._finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        self._done: list[Future] = []

    def __len__(self) -> int:
        return len(self._claims)

    def start(self, claim: Claim) -> None:
        """Hand a claimed delivery to the next free thread."""
        future = self._pool.submit(send_claimed, claim, now=self._now)
        self._claims[future] = claim
        future.add_done_callback(self._finished.put)

    def nudge(self) -> None:
        """End a wait() at once (new deliveries are due, or the worker is stopping)."""
        self._finished.put(None)

    def wait(self, *, timeout: float, unfinished: int) -> None:
        """Wait up to `timeout` until one has finished and at most `unfinished` are still going.

        A nudge() ends the wait sooner.
        """
        deadline = time.monotonic() + timeout
        while not self._done or len(self._claims) - len(self._done) > unfinished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                future = self._finished.get(timeout=remaining)
            except queue.Empty:
                return
            if future is None:
                return
            self._done.append(future)

    def take_finished(self) -> tuple[list[FinishedAttempt], list[tuple[Claim, BaseException]]]:
        """The attempts of the sends that have finished, and the claims whose send raised."""
        with contextlib.suppress(queue.Empty):
            while True:
                future = self._finished.get_nowait()
                if future is not None:  # (a nudge)
                    self._done.append(future)
        attempts, broken = [], []
        for future in self._done:
            claim = self._claims.pop(future)
            error = future.exception()
            if error is None:
                attempts.append(future.result())
            else:
                broken.append((claim, error))
        self._done.clear()
        return attempts, broken


class Worker:
    """Claims due deliveries and sends them on a pool of threads until stopped."""

    def __init__(
        self,
        *,
        concurrency: int = 1,
        poll_interval: float | None = None,
        now: Callable[[], datetime] = timezone.now,
    ) -> None:
        self.concurrency = concurrency
        self.poll_interval = (
            settings.DELIVERY_POLL_INTERVAL_SECONDS if poll_interval is None else poll_interval
        )
        self.now = now
        self.stats = WorkerStats()
        self._stopping = threading.Event()
        # Set when deliveries may be due now (a notification, on PostgreSQL) or on stop: it ends
        # an idle wait before the poll interval is up.
        self._wake = threading.Event()
        self._sends: _Sends | None = None
        self.listener: Listener | None = None

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming; deliveries already being sent finish and are recorded."""
        self._stopping.set()
        self.wake()

    def wake(self) -> None:
        """Look for due deliveries now rather than at the end of the poll interval."""
        self._wake.set()
        sends = self._sends
        if sends is not None:
            sends.nudge()  # a worker waiting on its threads may have one free for them

    def run(self, *, once: bool = False) -> WorkerStats:
        """Deliver until stopped, or with `once` until nothing is due now."""
        # The pool's threads only send. This thread does all the database work in rounds: it
        # claims when the threads are down to their last deliveries, then records everything
        # they finished since the last round in one transaction. The threads never queue for
        # the database (or SQLite's single writer), and each statement serves many deliveries.
        # On PostgreSQL a long-running worker also listens, so a new run's pages wake it at
        # once; it still polls, in case a notification is lost with the listening connection.
        if not once and can_listen():
            self.listener = Listener(self.wake).start()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="deliver") as pool:
            sends = self._sends = _Sends(pool, now=self.now)
            try:
                self._rounds(sends, once=once)
            finally:
                if self.listener is not None:
                    self.listener.stop()
                # However the rounds ended (stopped, drained, or an error), what was sent is
                # recorded before the worker returns.
                while sends:
                    sends.wait(timeout=self.poll_interval, unfinished=0)
                    self._record(sends)
                self._close_thread_connections(pool)
        return self.stats

    def _rounds(self, sends: _Sends, *, once: bool) -> None:
        """Claim, hand out and record, round after round, until stopped or (`once`) drained."""
        # Up to one batch queued behind the running threads keeps them busy between claims.
        capacity = 2 * self.concurrency
        while not self._stopping.is_set():
            # Cleared before the claim: a notification arriving from here on ends the wait below.
            self._wake.clear()
            finished = sends.take_finished()
            claims = []
            if len(sends) <= self.concurrency:
                try:
                    claims = claim_due(limit=capacity - len(sends), now=self.now())
                except Exception:
                    logger.exception("worker.claim_failed")
                    self._record_finished(*finished)
                    if once:
                        raise  # --once reports a broken queue instead of spinning on it
                    close_old_connections()
                    self._stopping.wait(self.poll_interval)
                    continue
            for claim in claims:
                sends.start(claim)
            # Recorded after claiming, so the threads have their next deliveries meanwhile.
            recorded = self._record_finished(*finished)
            if once and not (claims or sends or recorded):
                return  # (after a round that recorded, one more: a retry may be due at once)
            if claims and len(sends) <= self.concurrency:
                continue  # more may be due right now
            if sends:
                sends.wait(timeout=self.poll_interval, unfinished=self.concurrency)
            elif once and recorded:
                # Nothing in flight, and the round after a record ends a drain unless a retry
                # is due at once: it is looked for now, not a poll interval later (which every
                # `--once` spent before exiting: 50 ms on SQLite, 100 ms on PostgreSQL).
                continue
            else:
                self._wake.wait(self.poll_interval)

    def _record(self, sends: _Sends) -> int:
        """Record what the threads have finished; how many attempts."""
        return self._record_finished(*sends.take_finished())

    def _record_finished(
        self, attempts: list[FinishedAttempt], broken: list[tuple[Claim, BaseException]]
    ) -> int:
        """Record finished attempts in one transaction (one by one if that fails); how many."""
        # send_event turns every Exception into a result; what is left (a SystemExit raised in
        # a thread, say) is an attempt all the same, retried under the limits rather than left
        # for the lease to expire and send it again.
        now = self.now()
        attempts = attempts + [
            FinishedAttempt(
                claim.delivery,
                unexpected_failure_result(
                    error,
                    started_at=now,
                    routing_key=readable_key(claim.delivery.routing_key_token),
                ),
                now,
                claim.lease_token,
            )
            for claim, error in broken
        ]
        self.stats.errors += len(broken)
        if not attempts:
            return 0
        try:
            statuses = record_attempts(attempts)
        except Exception:
            logger.exception("worker.record_failed deliveries=%d", len(attempts))
            close_old_connections()
            # One by one, so a row that cannot be stored does not cost the others their record;
            # a row whose answer cannot be stored is stored without it (record_attempt).
            statuses = []
            for attempt in attempts:
                try:
                    statuses.append(record_attempt(attempt).delivery.status)
                except Exception:
                    # The database itself is failing: the lease expires and the delivery is
                    # claimed again, which logs this attempt (LOST_LEASE_ERROR) and counts it.
                    logger.exception("worker.deliver_failed delivery=%s", attempt.delivery.pk)
                    self.stats.errors += 1
        for status in statuses:
            self.stats.count(status)
        return len(attempts)

    def _close_thread_connections(self, pool: ThreadPoolExecutor) -> None:
        # The sending threads need no database, but should one have opened a connection (Django
        # keeps one per thread), a barrier makes every pool thread close its own, so none is left
        # open (PostgreSQL would otherwise count it until it times out).
        barrier = threading.Barrier(self.concurrency)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connection.close()

        wait([pool.submit(close) for _ in range(self.concurrency)])
