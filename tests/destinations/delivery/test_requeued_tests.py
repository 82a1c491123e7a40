"""Failed deliveries that "Retry now" re-queues: tests are sent, failures stay counted."""

import html
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from destinations.delivery.outbox import retry_now
from destinations.keys.rotation import RotationRefused, rotate_routing_key
from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from destinations.services import send_test_alert
from tests.support.factories import drain, make_destination, make_detection, record_run
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

LOG_URL = reverse("admin:destinations_delivery_changelist")
HEALTH_URL = reverse("admin:destinations_health")

pytestmark = pytest.mark.django_db(transaction=True)


def failed_test_alert(fake_pagerduty, *, resolve: bool) -> Delivery:
    """A test alert that PagerDuty answered 500 when it was sent from the admin."""
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    fake_pagerduty.inject(Fault.status(500))
    outcome = send_test_alert(destination=destination, sent_by="admin", resolve=resolve)
    assert not outcome.accepted
    assert len(fake_pagerduty.received) == 1  # nothing resolves a test that was not accepted
    return outcome.delivery


def retry_now_in_admin(admin_client, delivery: Delivery) -> str:
    response = admin_client.post(
        LOG_URL,
        {"action": "retry_now_action", "_selected_action": [delivery.pk]},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"]]
    return message


def health_row(admin_client, destination_id: int) -> str:
    response = admin_client.get(HEALTH_URL)
    assert response.status_code == 200
    page = html.unescape(response.content.decode())
    start = page.index(f'data-destination="{destination_id}"')
    return page[start : page.index("</tr>", start)]


def last_failure_cell(row: str) -> str:
    start = row.index('class="health-failure"')
    return row[start : row.index("</td>", start)]


def deliver_alerts_once() -> str:
    out = StringIO()
    call_command("deliver_alerts", "--once", "--concurrency", "1", stdout=out)
    return out.getvalue()


def test_a_retried_test_alert_is_sent_by_the_worker_then_resolved(
    admin_client, client, fake_pagerduty
):
    test = failed_test_alert(fake_pagerduty, resolve=True)

    message = retry_now_in_admin(admin_client, test)
    assert "1 failed delivery is due again now" in message
    assert "resolved after" in message

    # Re-queued, not yet sent: the failure is still counted (as a test) and shown.
    answer = client.get("/healthz").json()
    assert (answer["pending"], answer["failed_last_24h"]) == (0, 0)
    assert (answer["tests"]["pending"], answer["tests"]["failed_last_24h"]) == (1, 1)
    failure = last_failure_cell(health_row(admin_client, test.destination_id))
    assert "HTTP 500" in failure and "(test alert)" in failure

    output = deliver_alerts_once()

    assert "delivered 2" in output  # the test alert, then its resolve
    retried, resolve = fake_pagerduty.received[1:]
    assert retried.status == 202 and resolve.status == 202
    assert retried.json["event_action"] == "trigger"
    assert retried.json["dedup_key"] == test.dedup_key
    assert retried.json["payload"]["summary"] == "Test alert from SecOps on-call"
    assert resolve.json == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": test.dedup_key,
    }
    rows = Delivery.objects.filter(destination_id=test.destination_id).order_by("id")
    assert [(row.kind, row.status, row.dedup_key) for row in rows] == [
        (DeliveryKind.TEST, DeliveryStatus.DELIVERED, test.dedup_key),
        (DeliveryKind.RESOLVE, DeliveryStatus.DELIVERED, test.dedup_key),
    ]
    # Nothing is left waiting, and the failure is over once the test was delivered.
    answer = client.get("/healthz").json()
    assert answer["tests"] == {
        "pending": 0,
        "oldest_pending_age_seconds": None,
        "failed_last_24h": 0,
    }
    assert "—" in last_failure_cell(health_row(admin_client, test.destination_id))


def test_a_retried_test_alert_without_resolve_is_not_resolved(admin_client, client, fake_pagerduty):
    test = failed_test_alert(fake_pagerduty, resolve=False)

    message = retry_now_in_admin(admin_client, test)
    assert "resolved after" not in message
    output = deliver_alerts_once()

    assert "delivered 1," in output
    [retried] = fake_pagerduty.events
    assert (retried["event_action"], retried["dedup_key"]) == ("trigger", test.dedup_key)
    [row] = Delivery.objects.all()
    assert (row.kind, row.status) == (DeliveryKind.TEST, DeliveryStatus.DELIVERED)
    assert client.get("/healthz").json()["pending"] == 0


def test_a_retried_page_counts_as_failing_until_it_is_delivered(
    admin_client, client, fake_pagerduty
):
    destination = make_destination("SecOps", ROUTING_KEY)
    detection = make_detection("Suspicious Login Attempts", destination)
    _, [page] = record_run(detection, "run-1")
    fake_pagerduty.inject(Fault.status(400, body={"status": "invalid event", "errors": ["bad"]}))
    drain()
    page.refresh_from_db()
    assert page.status == DeliveryStatus.FAILED

    retry_now_in_admin(admin_client, page)
    # PagerDuty is down now: the retried page meets a 503 and waits for its next attempt.
    fake_pagerduty.inject(Fault.status(503))
    deliver_alerts_once()
    page.refresh_from_db()
    assert page.status == DeliveryStatus.PENDING

    assert client.get("/healthz").json()["failed_last_24h"] == 1
    row = health_row(admin_client, destination.pk)
    assert ">0.0%<" in row  # the one page is still a failed page, not left out of the rate
    assert "HTTP 503" in last_failure_cell(row)  # PagerDuty's latest answer

    drain(at=page.next_attempt_at)
    page.refresh_from_db()
    assert page.status == DeliveryStatus.DELIVERED
    assert client.get("/healthz").json()["failed_last_24h"] == 0
    row = health_row(admin_client, destination.pk)
    assert ">100.0%<" in row
    assert "—" in last_failure_cell(row)


def test_a_refused_key_rotation_test_is_not_sent_again_with_the_stored_key(
    admin_client, fake_pagerduty
):
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, status=404)
    with pytest.raises(RotationRefused):
        rotate_routing_key(destination=destination, new_key=OTHER_ROUTING_KEY, actor="admin")
    [test] = Delivery.objects.all()
    assert test.status == DeliveryStatus.FAILED

    message = retry_now_in_admin(admin_client, test)
    deliver_alerts_once()

    assert "0 failed deliveries are due again now" in message
    assert "1 test of a new routing key during a key rotation left as failed" in message
    assert "rotate_routing_key" in message
    assert len(fake_pagerduty.received) == 1  # the stored key never "proves" the refused one
    test.refresh_from_db()
    assert test.status == DeliveryStatus.FAILED
    assert retry_now([test]) == 0  # the service refuses it too, whoever calls it
