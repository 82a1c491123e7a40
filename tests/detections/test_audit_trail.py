"""A detection's trail: its fields and the destinations it pages, from the admin and the API."""

import json

import pytest
from django.urls import reverse

from destinations.audit.trail import audit_trail
from destinations.models import Destination
from detections.models import Detection
from detections.tokens import create_api_token
from tests.support.audit_trail import assert_trail_holds_no_secret, history_page
from tests.support.factories import make_destination, make_detection
from tests.support.rendered_forms import rendered_form_data
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

LIST_URL = reverse("admin:detections_detection_changelist")


def change_url(detection) -> str:
    return reverse("admin:detections_detection_change", args=[detection.pk])


def edit_through_the_form(client, detection, **changes):
    page = client.get(change_url(detection)).content.decode()
    data = rendered_form_data(page, form_id="detection_form", pressed="_save")
    data.update(
        {name: value if isinstance(value, list) else [value] for name, value in changes.items()}
    )
    response = client.post(change_url(detection), data)
    assert response.status_code == 302, response.context and response.context["errors"]


def test_an_admin_edit_of_fields_and_destinations_is_one_change(admin_client, admin_user):
    secops = make_destination("SecOps on-call", ROUTING_KEY)
    platform = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    detection = make_detection("Suspicious Login Attempts", secops, match_threshold=10)
    before = len(audit_trail(Detection, detection.pk))

    edit_through_the_form(
        admin_client,
        detection,
        match_threshold="5",
        destinations=[str(secops.pk), str(platform.pk)],
    )

    trail = audit_trail(Detection, detection.pk)
    assert len(trail) == before + 1
    change = trail[0]
    assert change.who == admin_user.get_username() and change.via == "admin"
    assert change.lines == (
        "match threshold: 10 → 5",
        "destinations: SecOps on-call → Platform on-call, SecOps on-call",
    )
    page = history_page(admin_client, detection)
    assert "match threshold: 10 → 5" in page
    assert "destinations: SecOps on-call → Platform on-call, SecOps on-call" in page
    assert_trail_holds_no_secret()


def test_the_disable_action_is_kept(admin_client):
    detection = make_detection("Suspicious Login Attempts")

    admin_client.post(LIST_URL, {"action": "disable_selected", "_selected_action": [detection.pk]})

    assert audit_trail(Detection, detection.pk)[0].lines == ("enabled: yes → no",)


def test_a_deleted_destination_is_named_in_the_trail_of_the_detections_it_paged(admin_client):
    secops = make_destination("SecOps on-call", ROUTING_KEY)
    detection = make_detection("Suspicious Login Attempts", secops)
    edit_through_the_form(admin_client, detection, destinations=[])
    secops.delete()

    assert audit_trail(Detection, detection.pk)[0].lines == (
        "destinations: SecOps on-call (deleted) → (none)",
    )


def test_a_deleted_detection_keeps_its_trail(admin_client):
    detection = make_detection("Suspicious Login Attempts", description="old")
    edit_through_the_form(admin_client, detection, description="new")
    delete = reverse("admin:detections_detection_delete", args=[detection.pk])

    assert admin_client.post(delete, {"post": "yes"}).status_code == 302

    assert not Detection.objects.exists()
    deleted, changed, _ = audit_trail(Detection, detection.pk)
    assert deleted.action == "deleted" and deleted.via == "admin"
    assert changed.lines == ("description: old → new",)


@pytest.mark.django_db
def test_config_api_changes_are_kept_under_the_tokens_name(client):
    make_destination("SecOps on-call", ROUTING_KEY)
    token = create_api_token(name="pipeline", scope="config")
    body = {
        "destinations": [
            {
                "name": "SecOps on-call",
                "routing_key": {"is_secret": True},
                "severity": {"value": "critical"},
            }
        ],
        "detections": [{"name": "Suspicious Login Attempts", "destinations": ["SecOps on-call"]}],
    }

    response = client.post(
        "/api/v1/config",
        json.dumps(body),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 200, response.content
    detection = Detection.objects.get()
    [created] = audit_trail(Detection, detection.pk)
    assert created.via == "API token “pipeline”"
    assert "destinations: SecOps on-call" in created.lines
    change = audit_trail(Destination, Destination.objects.get().pk)[0]
    assert change.via == "API token “pipeline”"
    assert "severity override: automatic (from detection severity) → critical" in change.lines


def test_the_history_page_of_an_unknown_detection_says_so(admin_client):
    url = reverse("admin:detections_detection_history", args=["not-a-uuid"])

    response = admin_client.get(url, follow=True)

    assert response.status_code == 200
    assert "doesn’t exist" in response.content.decode()
