"""prune_deliveries: finished deliveries past the retention go with their attempts; nothing else."""

import threading
import time
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from destinations.delivery.outbox import retry_now
from destinations.models import (
    DailyRollup,
    Delivery,
    DeliveryAttempt,
    DeliveryKind,
    DeliveryStatus,
    Destination,
)
from destinations.retention.housekeeping import claim
from destinations.retention.prune import (
    _child_relations,
    _delete_batch,
    prunable,
    prune_deliveries,
)
from tests.support.factories import (
    DETECTION_NAME,
    days_ago,
    make_detection,
    record_run,
    stored_delivery,
    with_attempt,
)

pytestmark = pytest.mark.django_db


def prune(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command("prune_deliveries", *args, stdout=out)
    return out.getvalue()


def old(destination, status, days=100, **fields):
    return with_attempt(
        stored_delivery(destination, status=status, created_at=days_ago(days), **fields)
    )


def test_it_deletes_finished_deliveries_past_the_retention_with_their_attempts(destination):
    gone = [old(destination, "delivered"), old(destination, "failed", days=400)]
    kept = [old(destination, "delivered", days=89), old(destination, "failed", days=3)]

    output = prune()

    assert "Pruned 2 deliveries and 2 attempts" in output
    assert "(90 days)" in output
    assert set(Delivery.objects.values_list("pk", flat=True)) == {d.pk for d in kept}
    assert set(DeliveryAttempt.objects.values_list("delivery_id", flat=True)) == {
        d.pk for d in kept
    }
    assert not DeliveryAttempt.objects.filter(delivery_id__in=[d.pk for d in gone]).exists()


def test_unfinished_deliveries_are_never_pruned_however_old(destination):
    pending = old(destination, "pending", days=900)
    sending = old(destination, "sending", days=900, lease_expires_at=timezone.now())
    # A failure re-queued by "Retry now" keeps its old finished_at, and is unfinished.
    requeued = old(destination, "failed", days=900)
    retry_now([requeued])

    output = prune()

    assert "Pruned 0 deliveries and 0 attempts" in output
    assert set(Delivery.objects.values_list("pk", flat=True)) == {
        pending.pk,
        sending.pk,
        requeued.pk,
    }
    assert DeliveryAttempt.objects.count() == 3


def test_it_counts_from_when_a_delivery_finished_not_when_it_was_created(destination):
    # Created long ago, re-queued and delivered last week: its log is a week old.
    recent = old(destination, "delivered", days=200)
    Delivery.objects.filter(pk=recent.pk).update(finished_at=days_ago(7), delivered_at=days_ago(7))
    prune()
    assert Delivery.objects.filter(pk=recent.pk).exists()


def test_dry_run_counts_and_deletes_nothing(destination):
    for _ in range(3):
        old(destination, "delivered")
    old(destination, "pending", days=300)

    output = prune("--dry-run")

    assert "3 finished deliveries older than 90 days" in output
    assert "would be pruned; nothing was deleted (--dry-run)." in output
    assert Delivery.objects.count() == 4 and DeliveryAttempt.objects.count() == 4
    assert not DailyRollup.objects.exists()


def test_it_works_in_batches_and_says_how_far_it_got(destination):
    for _ in range(5):
        old(destination, "delivered")
    output = prune("--batch-size", "2")
    assert "Pruned 2 of 5 deliveries…" in output
    assert "Pruned 4 of 5 deliveries…" in output
    assert "Pruned 5 of 5 deliveries…" in output
    assert output.rstrip().splitlines()[-1].startswith("Pruned 5 deliveries and 5 attempts")
    assert not Delivery.objects.exists()


def test_the_setting_and_days_option_choose_the_retention(destination, settings):
    twenty = old(destination, "delivered", days=20)
    prune()
    assert Delivery.objects.filter(pk=twenty.pk).exists()
    settings.DELIVERY_RETENTION_DAYS = 10
    assert "(10 days)" in prune()
    assert not Delivery.objects.exists()
    five = old(destination, "delivered", days=5)
    prune("--days", "3")
    assert not Delivery.objects.filter(pk=five.pk).exists()


def test_a_delivery_retried_between_selection_and_delete_stays(destination):
    failed = old(destination, "failed")
    delivered = old(destination, "delivered")
    cutoff = timezone.now() - timedelta(days=90)
    picked = list(prunable(cutoff).values_list("pk", flat=True))
    assert set(picked) == {failed.pk, delivered.pk}

    retry_now([failed])  # an admin clicks "Retry now" while the batch is on its way
    deleted, attempts = _delete_batch(picked, cutoff=cutoff, children=_child_relations())

    assert (deleted, attempts) == (1, 1)
    stored = Delivery.objects.get()
    assert (stored.pk, stored.status) == (failed.pk, DeliveryStatus.PENDING)
    assert DeliveryAttempt.objects.get().delivery_id == failed.pk  # its log stays whole


def test_the_last_event_of_an_incident_is_kept_so_auto_resolve_still_works(destination):
    destination.auto_resolve = True
    destination.save()
    detection = make_detection(DETECTION_NAME, destination)
    _, [first] = record_run(detection, "run-1")
    _, [last] = record_run(detection, "run-2")
    Delivery.objects.filter(pk__in=[first.pk, last.pk]).update(
        status=DeliveryStatus.DELIVERED,
        created_at=days_ago(200),
        delivered_at=days_ago(200),
        finished_at=days_ago(200),
    )

    prune()

    assert list(Delivery.objects.values_list("pk", flat=True)) == [last.pk]
    # The detection stops matching: the incident opened 200 days ago is resolved.
    _, [resolve] = record_run(detection, "run-3", match_count=0)
    assert resolve.kind == DeliveryKind.RESOLVE


def test_a_delivery_whose_fallback_is_stored_stays_until_the_fallback_goes(destination):
    backup = Destination.objects.create(name="Backup", routing_key="")
    origin = old(destination, "failed", days=200)
    fallback = old(backup, "failed", days=30, fallback_of=origin)

    prune()
    assert set(Delivery.objects.values_list("pk", flat=True)) == {origin.pk, fallback.pk}

    prune("--days", "10")  # the fallback goes; its origin, which finished first, with the next run
    assert set(Delivery.objects.values_list("pk", flat=True)) == {origin.pk}
    prune("--days", "10")
    assert not Delivery.objects.exists()


def test_it_refuses_while_another_housekeeping_runs(destination):
    old(destination, "delivered")
    assert claim(holder="other-host:42", due_only=False)
    with pytest.raises(CommandError) as refused:
        prune()
    assert "Housekeeping is already running (other-host:42" in str(refused.value)
    assert refused.value.returncode == 1
    assert Delivery.objects.count() == 1


def test_a_retention_under_one_day_is_refused(settings):
    settings.DELIVERY_RETENTION_DAYS = 0
    with pytest.raises(CommandError, match="DELIVERY_RETENTION_DAYS is 0; it must be"):
        prune()


def test_rows_kept_do_not_end_the_walk(destination):
    # The oldest row stays (its fallback is stored): a batch of it deletes nothing, and the
    # prune goes on past it rather than stopping there.
    backup = Destination.objects.create(name="Backup", routing_key="")
    origin = old(destination, "failed", days=300)
    fallback = old(backup, "failed", days=30, fallback_of=origin)
    newer = [old(destination, "failed", days=200 - n) for n in range(3)]

    output = prune("--batch-size", "1")

    assert "Pruned 0 of 4 deliveries…" in output
    assert output.rstrip().splitlines()[-1].startswith("Pruned 3 deliveries and 3 attempts")
    assert set(Delivery.objects.values_list("pk", flat=True)) == {origin.pk, fallback.pk}
    assert not Delivery.objects.filter(pk__in=[d.pk for d in newer]).exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one-statement batch")
def test_on_postgresql_a_batch_is_one_statement(destination):
    for days in (100, 101, 102):
        old(destination, "delivered", days=days)
    with CaptureQueriesContext(connection) as queries:
        report = prune_deliveries(retention_days=90, batch_size=10)
    deletes = [q["sql"] for q in queries if "DELETE" in q["sql"]]
    # The delivered rows in one batch, then one finding no more; one finding no failed ones.
    assert len(deletes) == 3
    assert (report.deleted, report.attempts_deleted) == (3, 3)
    assert not Delivery.objects.exists() and not DeliveryAttempt.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's one-statement batch")
@pytest.mark.django_db(transaction=True)
def test_a_delivery_retried_while_its_batch_is_deleted_stays(destination):
    failed = old(destination, "failed")
    other = old(destination, "failed", days=101)
    done = {}

    def prune_in_background():
        try:
            done["report"] = prune_deliveries(retention_days=90)
        finally:
            connections.close_all()

    pruning = threading.Thread(target=prune_in_background)
    with transaction.atomic():
        # An admin's "Retry now" holds the row, not yet committed, when the batch reaches it:
        # the batch's statement waits for it, then sees the row pending and leaves it.
        assert retry_now([failed]) == 1
        pruning.start()
        with connection.cursor() as cursor:
            for _ in range(200):
                # The activity view is read once per transaction unless asked afresh.
                cursor.execute("SELECT pg_stat_clear_snapshot()")
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if cursor.fetchone()[0]:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("the prune never waited on the retried row")
    pruning.join(timeout=30)

    assert done["report"].deleted == 1
    stored = Delivery.objects.get()
    assert (stored.pk, stored.status) == (failed.pk, DeliveryStatus.PENDING)
    assert DeliveryAttempt.objects.get().delivery_id == failed.pk  # its log stays whole
    assert not Delivery.objects.filter(pk=other.pk).exists()
