"""The delivery log and the destination list as an on-call admin reads them."""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from destinations.models import Delivery, DeliveryAttempt, DeliveryStatus
from tests.support.admin_pages import page_text
from tests.support.factories import drain, make_destination, make_detection, queue_event, record_run
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import ROUTING_KEY

LOG_URL = reverse("admin:destinations_delivery_changelist")
HOUR = timedelta(hours=1)

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
    # Once, at the top; both attempts said the same, so their rows point up to it.
    assert detail.count("PagerDuty answered 503") == 1
    assert re.findall(r'<td class="field-answer">\s*<p>(.*?)</p>', detail) == ["as above"] * 2
    assert '"event_action": "trigger"' in detail  # the stored event, without the key
    assert ROUTING_KEY not in detail
    assert 'name="_save"' not in detail  # read-only


def result_rows(response) -> str:
    """The changelist's table of results, without the filter sidebar."""
    page = response.content.decode()
    start = page.index('id="result_list"')
    return page[start : page.index("</table>", start)]


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


# The delivery's page, the log's columns and what the log does not offer


@pytest.fixture
def refused_delivery(fake_pagerduty):
    """A trigger PagerDuty refused with its errors (400 is not retried)."""
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    detection = make_detection("Suspicious Login Attempts", destination)
    fake_pagerduty.refuse_key(ROUTING_KEY, status=400)
    _, [delivery] = record_run(detection, "run-9")
    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.pagerduty_errors == ["Invalid routing key"]
    return delivery


def delivery_page(client, delivery) -> str:
    return page_text(client.get(reverse("admin:destinations_delivery_change", args=[delivery.pk])))


def labels(page: str) -> list[str]:
    """The labels of a change page's fields, in order."""
    return re.findall(r"<label>(.*?):</label>", page)


def column_headers(page: str) -> list[str]:
    """A changelist's column headers, without the select-all checkbox."""
    thead = page[page.index('id="result_list"') :]
    thead = thead[: thead.index("</thead>")]
    headers = re.findall(r'<div class="text">(?:<a [^>]*>|<span>)(.*?)</(?:a|span)>', thead)
    return [header for header in headers if "<input" not in header]


def test_delivery_page_leads_with_what_where_and_outcome_then_attempts_then_folded_fields(
    admin_client, refused_delivery
):
    page = delivery_page(admin_client, refused_delivery)

    answer = "PagerDuty answered 400: Event object is invalid (Invalid routing key)"
    # PagerDuty's message and errors are in that one sentence, shown once, not field by field.
    assert page.count(answer) == 1
    assert page.count("Invalid routing key") == 2  # the sentence, and the folded raw answer
    assert labels(page)[:6] == [
        "Destination",
        "Detection run",
        "Kind",
        "Status",
        "PagerDuty's answer",
        "Created at",
    ]
    summary = page.index("field-full_answer")
    attempts = page.index('id="attempt_log-group"')
    folded = page.index("<details><summary>")
    assert summary < attempts < folded
    assert "Stored fields" in page[folded:] and '"event_action": "trigger"' in page[folded:]
    assert ">Suspicious Login Attempts, <a " in page and "run run-9</a> (Matched)" in page


def test_finished_deliveries_show_no_next_attempt_and_unfinished_ones_do(
    admin_client, refused_delivery
):
    waiting = queue_event(refused_delivery.destination, "k-1")
    Delivery.objects.filter(pk=waiting.pk).update(next_attempt_at=waiting.created_at + HOUR)

    rows = result_rows(admin_client.get(LOG_URL)).split("<tr")
    [failed_row] = [row for row in rows if "delivery-failed" in row]
    [pending_row] = [row for row in rows if "delivery-pending" in row]
    assert "next attempt" not in failed_row
    assert re.search(r"next attempt in (59\xa0minutes|1\xa0hour)</span>", pending_row)

    failed_page = delivery_page(admin_client, refused_delivery)
    assert "Next attempt at" not in failed_page and "Lease expires at" not in failed_page
    assert "next attempt" not in failed_page
    assert "Finished at" in labels(failed_page)
    pending_page = delivery_page(admin_client, waiting)
    assert "Next attempt at" in labels(pending_page)
    assert "Finished at" not in labels(pending_page)


def test_the_log_offers_no_delete(admin_client, refused_delivery):
    listing = page_text(admin_client.get(LOG_URL))
    assert 'value="delete_selected"' not in listing
    assert 'value="retry_now_action"' in listing

    delete_url = reverse("admin:destinations_delivery_delete", args=[refused_delivery.pk])
    assert admin_client.get(delete_url).status_code == 403
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert "deletelink" not in delivery_page(admin_client, refused_delivery)
    admin_client.post(
        LOG_URL,
        {"action": "delete_selected", "_selected_action": [refused_delivery.pk], "post": "yes"},
    )
    assert Delivery.objects.filter(pk=refused_delivery.pk).exists()


def test_log_and_delivery_page_labels_read_as_words(admin_client, refused_delivery):
    assert column_headers(page_text(admin_client.get(LOG_URL))) == [
        "Created at",
        "Kind",
        "Destination",
        "Detection",
        "Status",
        "Total attempts",
        "PagerDuty's answer",
    ]
    page = delivery_page(admin_client, refused_delivery)
    assert labels(page) == [
        "Destination",
        "Detection run",
        "Kind",
        "Status",
        "PagerDuty's answer",
        "Created at",
        "Finished at",
        "Dedup key",
        "Dedup key PagerDuty returned",
        "Attempts",
        "Total attempts",
        "Queued at",
        "Delivered at",
        "Event",
    ]
    attempts = page[page.index('id="attempt_log-group"') :]
    headers = re.findall(r'<th class="column-\w+">(.*?)\s*</th>', attempts)
    assert headers == [
        "Number",
        "Started at",
        "Took",
        "Status code",
        "Result",
        "Answer",
        "Raw answer",
    ]


def test_there_is_no_view_site_link_to_a_missing_site(admin_client):
    page = page_text(admin_client.get(reverse("admin:index")))
    assert "View site" not in page
    assert reverse("admin:destinations_health") in page  # the way to the health page stays


def test_health_pages_last_failure_gives_pagerdutys_answer_once(admin_client, refused_delivery):
    page = page_text(admin_client.get(reverse("admin:destinations_health")))

    start = page.index(f'data-destination="{refused_delivery.destination_id}"')
    row = page[start : page.index("</tr>", start)]
    cell = row[row.index('class="health-failure"') :]
    # The message and the error were each listed again beside the sentence that holds them.
    assert re.findall(r"<li>(.*?)</li>", cell) == [
        "PagerDuty answered 400: Event object is invalid (Invalid routing key)"
    ]
