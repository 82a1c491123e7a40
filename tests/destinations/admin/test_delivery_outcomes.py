"""Delivery outcomes are shown only to users who may read the delivery log (view_delivery)."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from tests.support.admin_pages import change_url, page_text
from tests.support.factories import drain, make_detection, record_run

pytestmark = pytest.mark.django_db

LIST_URL = reverse("admin:destinations_destination_changelist")
# What a delivered page looks like wherever its outcome is shown.
DELIVERED_BADGE = 'class="delivery-status delivery-delivered"'
# Everything about destinations, detections and their runs, but nothing of the delivery log.
DESTINATION_PERMISSIONS = [
    "view_destination",
    "change_destination",
    "view_detection",
    "view_detectionrun",
]


@pytest.fixture
def delivered_run(destination, fake_pagerduty):
    """A run whose page reached PagerDuty: the destination's last delivery is delivered."""
    run, _ = record_run(make_detection("Suspicious Login Attempts", destination), "run-1")
    drain()
    assert len(fake_pagerduty.received) == 1
    return run


def staff_client(client, *codenames: str):
    user = User.objects.create_user("on-call", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client.force_login(user)
    return client


def run_url(run) -> str:
    return reverse("admin:detections_detectionrun_change", args=[run.pk])


def test_without_view_delivery_the_destination_list_shows_no_outcomes(client, delivered_run):
    viewer = staff_client(client, *DESTINATION_PERMISSIONS)

    page = page_text(viewer.get(LIST_URL))

    assert "SecOps on-call" in page  # the list itself is there
    assert "last delivery" not in page.lower()
    assert DELIVERED_BADGE not in page


def test_with_view_delivery_the_destination_list_shows_the_last_outcome(client, delivered_run):
    viewer = staff_client(client, *DESTINATION_PERMISSIONS, "view_delivery")

    page = page_text(viewer.get(LIST_URL))

    assert "last delivery" in page.lower()
    assert DELIVERED_BADGE in page


def test_without_view_delivery_a_runs_page_shows_no_deliveries(client, delivered_run, destination):
    viewer = staff_client(client, *DESTINATION_PERMISSIONS)

    run_page = page_text(viewer.get(run_url(delivered_run)))
    destination_page = page_text(viewer.get(change_url(destination)))

    assert "Suspicious Login Attempts" in run_page
    assert DELIVERED_BADGE not in run_page
    assert ">Deliveries<" not in run_page
    assert DELIVERED_BADGE not in destination_page


def test_with_view_delivery_a_runs_page_shows_its_deliveries(client, delivered_run):
    viewer = staff_client(client, *DESTINATION_PERMISSIONS, "view_delivery")

    run_page = page_text(viewer.get(run_url(delivered_run)))

    assert ">Deliveries<" in run_page
    assert DELIVERED_BADGE in run_page
