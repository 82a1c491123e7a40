"""The delivery worker: claim due deliveries with a lease, send them, record what happened."""

import contextlib
import logging
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Exists, F, OuterRef, Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from .delivery import record_attempt, send_event, unreadable_key_result
from .encryption import DecryptionError, decrypt
from .models import UNFINISHED, Delivery, DeliveryAttempt, DeliveryKind, DeliveryStatus
from .rate_budget import take_tokens

logger = logging.getLogger("destinations.worker")

LOST_LEASE_ERROR = (
    "The worker sending this attempt stopped before recording PagerDuty's answer "
    "(its lease expired); the delivery was taken up again."
)


@dataclass(frozen=True)
class Claim:
    """A delivery this worker holds until `lease_token` is released or its lease expires."""

    delivery: Delivery
    lease_token: uuid.UUID


def _due_deliveries(now: datetime):
    earlier_unfinished = Delivery.objects.filter(
        destination_id=OuterRef("destination_id"),
        dedup_key=OuterRef("dedup_key"),
        id__lt=OuterRef("id"),
        status__in=UNFINISHED,
    )
    return (
        Delivery.objects.filter(
            Q(status=DeliveryStatus.PENDING, next_attempt_at__lte=now)
            | Q(status=DeliveryStatus.SENDING, lease_expires_at__lte=now)
        )
        .exclude(kind=DeliveryKind.TEST)
        # Order per incident: a later event for the same destination and dedup key waits.
        .filter(~Exists(earlier_unfinished))
        .order_by("next_attempt_at", "id")
    )


def claim_due(*, limit: int, now: datetime | None = None) -> list[Claim]:
    """Lease up to `limit` due deliveries, within each destination's send budget.

    On PostgreSQL the rows are locked with FOR UPDATE SKIP LOCKED, so concurrent workers on any
    host pass over each other's rows; SQLite's IMMEDIATE transactions serialise claimers instead.
    """
    now = now or timezone.now()
    if limit <= 0:
        return []
    with transaction.atomic():
        claimed: list[Delivery] = []
        # Rows over their destination's budget are pushed back (no longer due), so selecting
        # again finds the next candidates; each pass claims or defers at least one row.
        while len(claimed) < limit:
            rows = list(
                _due_deliveries(now)
                .exclude(pk__in=[row.pk for row in claimed])
                .select_related("destination")
                # The key's raw token, decrypted by the sending thread: one undecryptable key
                # must fail its own deliveries, not every claim.
                .defer("destination__routing_key")
                .annotate(routing_key_token=Cast("destination__routing_key", TextField()))
                .select_for_update(skip_locked=True, of=("self",))[: limit - len(claimed)]
            )
            if not rows:
                break
            claimed += _within_budget(rows, now)
        if not claimed:
            return []
        _log_lost_leases([row for row in claimed if row.status == DeliveryStatus.SENDING], now)
        token = uuid.uuid4()
        by_timeout = defaultdict(list)
        for row in claimed:
            by_timeout[row.destination.timeout_seconds].append(row.pk)
        for timeout, ids in by_timeout.items():
            lease = timedelta(seconds=timeout + settings.DELIVERY_LEASE_MARGIN_SECONDS)
            Delivery.objects.filter(pk__in=ids).update(
                status=DeliveryStatus.SENDING,
                lease_token=token,
                lease_expires_at=now + lease,
                attempts=F("attempts") + 1,
                total_attempts=F("total_attempts") + 1,
            )
    for row in claimed:
        row.status, row.lease_token = DeliveryStatus.SENDING, token
        row.attempts += 1
        row.total_attempts += 1
    return [Claim(delivery=row, lease_token=token) for row in claimed]


def _within_budget(rows: list[Delivery], now: datetime) -> list[Delivery]:
    """The rows the destinations' budgets allow now; the others become due when a token is."""
    granted = take_tokens(Counter(row.destination_id for row in rows), now=now)
    taken: Counter = Counter()
    allowed_rows, deferred = [], defaultdict(list)
    for row in rows:
        allowed, wait_seconds = granted[row.destination_id]
        if taken[row.destination_id] < allowed:
            taken[row.destination_id] += 1
            allowed_rows.append(row)
        else:
            deferred[wait_seconds].append(row.pk)
    for wait_seconds, ids in deferred.items():
        # Not counted as an attempt: nothing was sent.
        Delivery.objects.filter(pk__in=ids).update(
            status=DeliveryStatus.PENDING,
            next_attempt_at=now + timedelta(seconds=wait_seconds),
            lease_expires_at=None,
            lease_token=None,
        )
    return allowed_rows


def _log_lost_leases(rows: list[Delivery], now: datetime) -> None:
    """Record the attempt a stopped worker never finished, so the log shows it."""
    DeliveryAttempt.objects.bulk_create(
        [
            DeliveryAttempt(
                delivery=row,
                number=row.total_attempts,
                started_at=row.lease_expires_at
                - timedelta(
                    seconds=row.destination.timeout_seconds + settings.DELIVERY_LEASE_MARGIN_SECONDS
                ),
                result=DeliveryAttempt.Result.RETRY,
                error=LOST_LEASE_ERROR,
            )
            for row in rows
        ]
    )


def deliver(claim: Claim, *, now: Callable[[], datetime] = timezone.now) -> str:
    """Send one claimed delivery and record the attempt; returns the delivery's new status."""
    delivery = claim.delivery
    try:
        routing_key = decrypt(delivery.routing_key_token)
    except DecryptionError:
        result = unreadable_key_result()
    else:
        result = send_event(delivery.event, delivery.destination, routing_key=routing_key)
    return record_attempt(delivery, result, now=now(), lease_token=claim.lease_token)


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
        self._lock = threading.Lock()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop(self) -> None:
        """Stop claiming; deliveries already being sent finish and are recorded."""
        self._stopping.set()

    def run(self, *, once: bool = False) -> WorkerStats:
        """Deliver until stopped, or with `once` until nothing is due now."""
        inflight: set[Future] = set()
        # Up to one batch queued behind the running threads keeps them busy between claims.
        capacity = 2 * self.concurrency
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="deliver") as pool:
            while not self._stopping.is_set():
                claims = []
                if len(inflight) <= self.concurrency:
                    try:
                        claims = claim_due(limit=capacity - len(inflight), now=self.now())
                    except Exception:
                        logger.exception("worker.claim_failed")
                        if once:
                            raise  # --once reports a broken queue instead of spinning on it
                        close_old_connections()
                        self._stopping.wait(self.poll_interval)
                        continue
                inflight.update(pool.submit(self._deliver, claim) for claim in claims)
                if once and not claims and not inflight:
                    break
                if claims and len(inflight) <= self.concurrency:
                    continue  # more may be due right now
                if inflight:
                    _, inflight = wait(inflight, self.poll_interval, return_when=FIRST_COMPLETED)
                else:
                    self._stopping.wait(self.poll_interval)
            wait(inflight)
            self._close_thread_connections(pool)
        return self.stats

    def _close_thread_connections(self, pool: ThreadPoolExecutor) -> None:
        # Django keeps one connection per thread; a barrier makes every pool thread run one of
        # these, so none is left open (PostgreSQL would otherwise count it until it times out).
        barrier = threading.Barrier(self.concurrency)

        def close() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connection.close()

        wait([pool.submit(close) for _ in range(self.concurrency)])

    def _deliver(self, claim: Claim) -> None:
        try:
            status = deliver(claim, now=self.now)
        except Exception:
            # The lease expires and another pass takes the delivery up again: nothing is lost.
            logger.exception("worker.deliver_failed delivery=%s", claim.delivery.pk)
            with self._lock:
                self.stats.errors += 1
            connection.close()
            return
        with self._lock:
            self.stats.count(status)
