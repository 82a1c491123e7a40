"""GET /metrics: what a Prometheus scrape reads after deliveries, test alerts, runs and failures."""

import io
import logging
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import OperationalError, connection, connections
from django.db.models import Sum
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from destinations.delivery.claims import claim_due
from destinations.delivery.outbox import retry_now
from destinations.models import AttemptDurationTally, Delivery, DeliveryAttempt, DeliveryStatus
from destinations.services import send_test_alert
from destinations.tallies import ATTEMPT_DURATION_BUCKETS, BUCKET_LABELS, add_to_tallies
from detections.models import RunOutcomeTally
from tests.support.factories import (
    DETECTION_NAME,
    drain,
    make_destination,
    make_detection,
    post_run,
    queue_event,
    run_body,
)
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY
from tests.support.scrape import METRICS_URL, parse, scrape
from tests.support.worker_process import start_worker

pytestmark = pytest.mark.django_db

DELIVERIES = "detection_destinations_deliveries_total"
RATE_LIMITED = "detection_destinations_rate_limited_total"
DURATION = "detection_destinations_attempt_duration_seconds"
QUEUE = "detection_destinations_queue"
OLDEST = "detection_destinations_oldest_pending_age_seconds"
RUNS = "detection_destinations_runs_total"
METRICS_TOKEN = "metrics-scrape-token-8d41c07e5b"


def delivered(scraped, destination: str, kind: str = "trigger") -> float:
    return scraped.value(DELIVERIES, destination=destination, kind=kind, outcome="delivered")


def failed(scraped, destination: str, kind: str = "trigger") -> float:
    return scraped.value(DELIVERIES, destination=destination, kind=kind, outcome="failed")


def test_delivered_failed_and_rate_limited_pages_are_what_a_scraper_reads(client, fake_pagerduty):
    paged = make_destination("SecOps on-call", ROUTING_KEY)
    refused = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, 400)
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "5"}), times=1)
    for n in range(3):
        queue_event(paged, f"incident-{n}")
    now = timezone.now()
    drain(at=now)

    first = scrape(client)
    assert delivered(first, "SecOps on-call") == 2
    assert first.value(RATE_LIMITED, destination="SecOps on-call") == 1
    assert first.value(QUEUE, status="pending") == 1
    assert first.value(QUEUE, status="sending") == 0
    assert first.value(OLDEST) > 0

    queue_event(refused, "incident-refused-1")
    queue_event(refused, "incident-refused-2")
    drain(at=now + timedelta(seconds=6))

    scraped = scrape(client)
    assert delivered(scraped, "SecOps on-call") == 3
    assert failed(scraped, "SecOps on-call") == 0
    assert failed(scraped, "Platform on-call") == 2
    assert delivered(scraped, "Platform on-call") == 0
    assert scraped.value(RATE_LIMITED, destination="SecOps on-call") == 1
    assert scraped.value(RATE_LIMITED, destination="Platform on-call") == 0
    # One observation per attempt: the 429 and three acceptances; two refusals.
    assert scraped.value(f"{DURATION}_count", destination="SecOps on-call") == 4
    assert scraped.value(f"{DURATION}_bucket", destination="SecOps on-call", le="+Inf") == 4
    assert scraped.value(f"{DURATION}_count", destination="Platform on-call") == 2
    stored_ms = DeliveryAttempt.objects.aggregate(total=Sum("duration_ms"))["total"]
    total = sum(scraped.series(f"{DURATION}_sum").values())
    assert total == pytest.approx(stored_ms / 1000)
    assert (scraped.value(QUEUE, status="pending"), scraped.value(OLDEST)) == (0, 0)


def test_the_histogram_buckets_are_cumulative_and_end_in_inf(client, destination):
    add_to_tallies(
        AttemptDurationTally,
        {(destination.pk, "0.05"): (2, 60), (destination.pk, "1.0"): (1, 700)},
        key=("destination", "le"),
        values=("count", "duration_ms"),
    )
    buckets = {
        dict(labels)["le"]: value
        for labels, value in scrape(client).series(f"{DURATION}_bucket").items()
    }
    assert buckets["0.025"] == 0
    assert buckets["0.05"] == buckets["0.1"] == buckets["0.5"] == 2
    assert buckets["1.0"] == buckets["120.0"] == buckets["+Inf"] == 3
    assert list(buckets)[-1] == "+Inf"
    assert scrape(client).value(f"{DURATION}_sum", destination=destination.name) == 0.76


def test_the_bucket_labels_are_written_as_the_prometheus_client_writes_them():
    # The worker stores them without importing the client (destinations/tallies.py).
    from prometheus_client.utils import floatToGoString

    written = (*map(floatToGoString, ATTEMPT_DURATION_BUCKETS), "+Inf")
    assert written == BUCKET_LABELS


def test_test_alerts_and_their_resolves_are_counted_as_tests_only(
    client, destination, fake_pagerduty
):
    send_test_alert(destination=destination, sent_by="admin", resolve=True)
    fake_pagerduty.refuse_key(ROUTING_KEY, 403)
    send_test_alert(destination=destination, sent_by="admin")

    scraped = scrape(client)
    assert delivered(scraped, destination.name, kind="test") == 2  # the test and its resolve
    assert failed(scraped, destination.name, kind="test") == 1
    for kind in ("trigger", "resolve"):
        assert (
            delivered(scraped, destination.name, kind)
            == failed(scraped, destination.name, kind)
            == 0
        )
    # A test's call from the admin says nothing about how pages fare.
    assert scraped.value(f"{DURATION}_count", destination=destination.name) == 0


def test_a_failure_retried_now_counts_once_failed_and_once_delivered(
    client, destination, fake_pagerduty
):
    fake_pagerduty.refuse_key(ROUTING_KEY, 404)
    delivery = queue_event(destination, "incident-1")
    drain()
    assert failed(scrape(client), destination.name) == 1

    fake_pagerduty.reset()
    retry_now([delivery])
    requeued = scrape(client)
    assert requeued.value(QUEUE, status="pending") == 1
    assert failed(requeued, destination.name) == 1  # a counter never goes back
    drain()

    scraped = scrape(client)
    assert (failed(scraped, destination.name), delivered(scraped, destination.name)) == (1, 1)
    assert scraped.value(f"{DURATION}_count", destination=destination.name) == 2


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("rotated", ["before the clear", "after the resolve was queued"])
def test_a_resolve_voided_by_a_rotated_key_counts_as_a_failed_resolve(
    client, token, fake_pagerduty, monkeypatch, rotated
):
    resolving = make_destination("SecOps on-call", ROUTING_KEY, auto_resolve=True)
    make_detection(DETECTION_NAME, resolving)

    def rotate() -> None:
        monkeypatch.setattr("sys.stdin", io.StringIO(OTHER_ROUTING_KEY + "\n"))
        call_command("rotate_routing_key", resolving.name, stdout=io.StringIO())

    assert post_run(client, run_body(run_id="run-1", match_count=5), token).status_code == 201
    drain()
    if rotated == "before the clear":
        rotate()
    assert post_run(client, run_body(run_id="run-2", match_count=0), token).status_code == 201
    if rotated != "before the clear":
        rotate()
    drain()

    assert Delivery.objects.get(kind="resolve", run__isnull=False).status == DeliveryStatus.FAILED
    scraped = scrape(client)
    assert failed(scraped, resolving.name, kind="resolve") == 1
    assert delivered(scraped, resolving.name, kind="trigger") == 1
    # The rotation's proof of the new key (a test alert, and its resolve) counts as tests.
    tests = Delivery.objects.filter(dedup_key__startswith="test-", status="delivered").count()
    assert delivered(scraped, resolving.name, kind="test") == tests >= 1
    assert delivered(scraped, resolving.name, kind="resolve") == 0


def test_the_queue_counts_unfinished_pages_by_status_and_leaves_tests_out(
    client, destination, fake_pagerduty
):
    fake_pagerduty.refuse_key(ROUTING_KEY, 403)
    test = send_test_alert(destination=destination, sent_by="admin").delivery
    queue_event(destination, "incident-1")
    queue_event(destination, "incident-2")
    claim_due(limit=1)  # a worker holds one page now
    retry_now([test])  # and a test alert is waiting again

    scraped = scrape(client)
    assert scraped.series(QUEUE) == {(("status", "pending"),): 1, (("status", "sending"),): 1}
    queued_at = Delivery.objects.filter(dedup_key__startswith="incident").earliest("queued_at")
    age = (timezone.now() - queued_at.queued_at).total_seconds()
    assert 0 < scraped.value(OLDEST) <= age


def test_runs_are_counted_by_outcome_and_a_repeat_is_not(client, token, detection):
    for run_id, fields in [
        ("run-1", {"match_count": 5}),
        ("run-2", {"match_count": 0}),
        ("run-3", {"errors": ["the search timed out"]}),
        ("run-4", {"match_count": 7}),
    ]:
        assert post_run(client, run_body(run_id=run_id, **fields), token).status_code == 201
    assert post_run(client, run_body(run_id="run-1"), token).status_code == 200  # a repeat
    assert post_run(client, run_body(run_id="run-5", match_count=-1), token).status_code == 400

    scraped = scrape(client)
    assert scraped.series(RUNS) == {
        (("outcome", "MATCHED"),): 2,
        (("outcome", "NOT_MATCHED"),): 1,
        (("outcome", "ERROR"),): 1,
    }


def test_a_destination_is_labelled_by_its_name_and_its_series_go_with_it(client, destination):
    other = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    queue_event(other, "incident-1")
    text = client.get(METRICS_URL).content.decode()
    assert ROUTING_KEY not in text and OTHER_ROUTING_KEY not in text
    assert parse(text).label_values(DELIVERIES, "destination") == {
        "SecOps on-call",
        "Platform on-call",
    }

    other.delete()
    scraped = scrape(client)
    for name in (DELIVERIES, RATE_LIMITED, f"{DURATION}_count", f"{DURATION}_bucket"):
        assert scraped.label_values(name, "destination") == {"SecOps on-call"}, name


def test_without_a_token_set_the_endpoint_is_open(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get(METRICS_URL).status_code == 200


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "GET /metrics needs the token set in METRICS_TOKEN"),
        ("Bearer ", "GET /metrics needs the token set in METRICS_TOKEN"),
        (f"Basic {METRICS_TOKEN}", "GET /metrics needs the token set in METRICS_TOKEN"),
        ("Bearer not-the-token", "The bearer token sent is not the one set in METRICS_TOKEN."),
        (f"Bearer {METRICS_TOKEN}x", "The bearer token sent is not the one set in METRICS_TOKEN."),
    ],
)
def test_with_a_token_set_a_missing_or_wrong_token_gets_401(
    client, settings, authorization, message
):
    settings.METRICS_TOKEN = METRICS_TOKEN
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = client.get(METRICS_URL, headers=headers)
    assert response.status_code == 401
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
    assert response.content.decode().startswith(message)
    assert "detection_destinations" not in response.content.decode()


def test_with_the_token_the_metrics_are_served_and_the_token_is_never_logged(
    client, settings, destination, caplog
):
    settings.METRICS_TOKEN = METRICS_TOKEN
    caplog.set_level(logging.DEBUG)
    scraped = scrape(client, token=METRICS_TOKEN)
    assert delivered(scraped, destination.name) == 0
    client.get(METRICS_URL, headers={"Authorization": "Bearer wrong"})
    assert METRICS_TOKEN not in caplog.text


def test_a_scraper_asking_for_openmetrics_gets_it(client, destination):
    response = client.get(METRICS_URL, headers={"Accept": "application/openmetrics-text"})
    assert response["Content-Type"].startswith("application/openmetrics-text")
    text = response.content.decode()
    assert text.endswith("# EOF\n")
    assert f'detection_destinations_deliveries_total{{destination="{destination.name}"' in text


def test_it_is_served_over_https_only_when_the_site_redirects(client, settings):
    # Unlike /healthz, which load balancers probe over plain HTTP: a token must not go in clear.
    settings.SECURE_SSL_REDIRECT = True
    response = client.get(METRICS_URL)
    assert (response.status_code, response["Location"]) == (301, "https://testserver/metrics")
    assert client.get(METRICS_URL, secure=True).status_code == 200


def test_only_get_and_head(client):
    assert client.head(METRICS_URL).status_code == 200
    response = client.post(METRICS_URL)
    assert (response.status_code, response["Allow"]) == (405, "GET, HEAD")


def test_a_database_that_does_not_answer_is_a_503_in_plain_text(client, monkeypatch):
    def unreachable(**kwargs):
        raise OperationalError("connection to server at 10.0.0.5 failed")

    monkeypatch.setattr("destinations.metrics.queue_figures", unreachable)
    response = client.get(METRICS_URL)
    assert response.status_code == 503
    assert response.content.decode() == "The database is unreachable (OperationalError).\n"


def test_a_scrape_costs_the_same_queries_with_10_or_200_deliveries_stored(
    client, destination, fake_pagerduty
):
    def queries_with(count: int) -> int:
        for n in range(count - Delivery.objects.count()):
            queue_event(destination, f"incident-{count}-{n}")
        drain()
        queue_event(destination, f"incident-{count}-pending")
        with CaptureQueriesContext(connection) as captured:
            scraped = scrape(client)
        assert (
            delivered(scraped, destination.name)
            == Delivery.objects.filter(status="delivered").count()
        )
        return len(captured)

    assert queries_with(10) == queries_with(200) == 6  # destinations, 4 tallies, the queue


@pytest.mark.django_db(transaction=True)
def test_a_second_process_and_a_second_connection_read_the_same_counts(client, fake_pagerduty):
    """A real deliver_alerts process adds to the counters; any process's scrape reads its adds."""
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    for n in range(5):
        queue_event(destination, f"incident-{n}")
    worker = start_worker("--once", events_url=fake_pagerduty.url)
    _, errors = worker.communicate(timeout=60)
    assert worker.returncode == 0, errors

    scraped = scrape(client)
    assert delivered(scraped, destination.name) == 5
    assert scraped.value(f"{DURATION}_count", destination=destination.name) == 5
    # And the counters are rows, which a new connection (another gunicorn process) reads alike.
    connections["default"].close()
    assert scrape(client) == scraped


def test_tallies_add_up_in_one_statement_however_many_rows(db):
    with CaptureQueriesContext(connection) as captured:
        add_to_tallies(
            RunOutcomeTally,
            {("MATCHED",): (2,), ("ERROR",): (1,)},
            key=("outcome",),
            values=("count",),
        )
    assert len(captured) == 1
    add_to_tallies(RunOutcomeTally, {("MATCHED",): (3,)}, key=("outcome",), values=("count",))
    assert dict(RunOutcomeTally.objects.values_list("outcome", "count")) == {
        "MATCHED": 5,
        "ERROR": 1,
    }
