"""The delivery log and the destination list as an on-call admin reads them."""

import html
import re

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus
from tests.support.admin_pages import page_text
from tests.support.factories import drain, make_destination, make_detection, queue_event, record_run
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import ROUTING_KEY

LOG_URL = reverse("admin:destinations_delivery_changelist")

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def failed_delivery(fake_pagerduty, settings):
    settings.DELIVERY_MAX_ATTEMPTS = 2
    destination = make_destination("SecOps", ROUTING_KEY)
    detection = make_detection("Suspicious Login Attempts", destination)
    _, [delivery] = record_run(detection, "run-7")
    fake_pagerduty.inject(Fault.status(503), times=2)
    drain()
    delivery.refresh_from_db()
    drain(at=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    return delivery


def test_log_lists_status_attempts_and_pagerdutys_answer(admin_client, failed_delivery):
    page = admin_client.get(LOG_URL).content.decode()
    assert "Suspicious Login Attempts" in page
    assert "delivery-failed" in page
    assert "gave up after 2 attempts" in page
    assert ROUTING_KEY not in page

    detail = html.unescape(
        admin_client.get(
            reverse("admin:destinations_delivery_change", args=[failed_delivery.pk])
        ).content.decode()
    )
    assert detail.count("PagerDuty answered 503") >= 2  # each attempt in the inline
    assert '"event_action": "trigger"' in detail  # the stored event, without the key
    assert ROUTING_KEY not in detail
    assert 'name="_save"' not in detail  # read-only


def result_rows(response) -> str:
    """The changelist's table of results, without the filter sidebar."""
    page = response.content.decode()
    return page[page.index('id="result_list"') : page.index("</table>", page.index("result_list"))]


def test_filters_by_status_kind_and_destination(admin_client, failed_delivery):
    other = make_destination("Platform", "A" * 32)
    queue_event(other, "k-1")
    failed = result_rows(admin_client.get(LOG_URL, {"status__exact": "failed"}))
    assert "Suspicious Login Attempts" in failed and "Platform" not in failed
    pending = result_rows(admin_client.get(LOG_URL, {"status__exact": "pending"}))
    assert "Platform" in pending and "Suspicious" not in pending
    by_dest = result_rows(
        admin_client.get(LOG_URL, {"destination__id__exact": other.pk, "kind__exact": "trigger"})
    )
    assert "Platform" in by_dest and "Suspicious Login Attempts" not in by_dest


def test_retry_now_delivers_once_pagerduty_is_back(admin_client, failed_delivery, fake_pagerduty):
    response = admin_client.post(
        LOG_URL,
        {"action": "retry_now_action", "_selected_action": [failed_delivery.pk]},
        follow=True,
    )
    [message] = [str(m) for m in response.context["messages"]]
    assert "1 failed delivery is due again now" in message
    drain()
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.DELIVERED
    assert DeliveryAttempt.objects.filter(delivery=failed_delivery).count() == 3


def test_log_cannot_be_added_to_or_edited(admin_client, failed_delivery):
    assert admin_client.get(reverse("admin:destinations_delivery_add")).status_code == 403
    url = reverse("admin:destinations_delivery_change", args=[failed_delivery.pk])
    admin_client.post(url, {"status": "delivered"})
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.FAILED


def test_retry_now_needs_the_change_permission(client, failed_delivery):
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_delivery"))
    client.force_login(viewer)
    assert client.get(LOG_URL).status_code == 200
    client.post(LOG_URL, {"action": "retry_now_action", "_selected_action": [failed_delivery.pk]})
    failed_delivery.refresh_from_db()
    assert failed_delivery.status == DeliveryStatus.FAILED


def test_destination_list_shows_the_last_delivery_status(admin_client, failed_delivery):
    page = admin_client.get(reverse("admin:destinations_destination_changelist")).content.decode()
    assert "delivery-failed" in page
    assert Delivery.objects.count() == 1


# Empty results and blank fields


def test_filtered_delivery_log_with_no_match_says_so(admin_client, configured_destination):
    detection = make_detection("Suspicious Login Attempts", configured_destination)
    record_run(detection, "run-1")

    page = page_text(
        admin_client.get(reverse("admin:destinations_delivery_changelist"), {"status": "failed"})
    )

    assert "No deliveries match this search or these filters." in page
    assert "No deliveries yet." not in page


def test_delivery_page_gives_the_size_with_separators_and_dashes_for_blanks(
    admin_client, configured_destination
):
    detection = make_detection("Suspicious Login Attempts", configured_destination)
    _, [delivery] = record_run(detection, "run-1")

    page = page_text(
        admin_client.get(reverse("admin:destinations_delivery_change", args=[delivery.pk]))
    )

    assert "PagerDuty's limit is 512,000)." in page
    lease = re.search(r'field-lease_expires_at">.*?<div class="readonly">(.*?)</div>', page, re.S)
    assert lease.group(1) == "—"  # empty, shown as a dash rather than "-"
