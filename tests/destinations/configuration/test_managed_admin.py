"""Records a configuration file manages, as an admin sees them: read-only, with a banner."""

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from destinations.models import Destination
from detections.models import ApiToken
from detections.tokens import authenticate_token, create_api_token
from tests.support.admin_pages import change_url, page_text, shown_messages
from tests.support.factories import make_detection
from tests.support.routing_keys import MASKED_KEY, ROUTING_KEY

BANNER = "Managed by config/site.yaml: change it there and run apply_config."


@pytest.fixture
def managed(destination) -> Destination:
    destination.managed_by = "config/site.yaml"
    destination.save()
    return destination


def detection_url(detection) -> str:
    return reverse("admin:detections_detection_change", args=[detection.pk])


def edit(destination, **changes) -> dict:
    data = {
        "name": destination.name,
        "enabled": "on",
        "region": "us",
        "routing_key": "",
        "severity_override": "",
        "component": "changed in the admin",
        "group": "",
        "event_class": "",
        "custom_details": "",
        "timeout_seconds": "30",
    }
    return {**data, **changes}


def test_a_managed_destination_is_read_only_with_a_banner_and_never_shows_its_key(
    admin_client, managed
):
    page = page_text(admin_client.get(change_url(managed)))

    assert BANNER in page
    assert 'name="_save"' not in page and 'name="component"' not in page
    assert "Delete" not in page.split('id="content-main"')[1].split("</form>")[0]
    assert MASKED_KEY in page and ROUTING_KEY not in page


def test_the_admin_refuses_edits_and_deletion_of_a_managed_destination(admin_client, managed):
    response = admin_client.post(change_url(managed), edit(managed))
    deleted = admin_client.post(
        reverse("admin:destinations_destination_delete", args=[managed.pk]), {"post": "yes"}
    )

    assert response.status_code == 403 and deleted.status_code == 403
    managed.refresh_from_db()
    assert managed.component == "auth"


def test_an_unmanaged_destination_is_still_edited_in_the_admin(admin_client, destination):
    page = page_text(admin_client.get(change_url(destination)))
    response = admin_client.post(change_url(destination), edit(destination))

    assert "Managed by" not in page and 'name="_save"' in page
    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.component == "changed in the admin"


def test_the_test_alert_button_still_works_on_a_managed_destination(
    admin_client, managed, fake_pagerduty
):
    page = page_text(admin_client.get(change_url(managed)))
    assert 'id="send-test-alert"' in page

    response = admin_client.post(
        reverse("admin:destinations_destination_test_alert", args=[managed.pk]), follow=True
    )

    [event] = fake_pagerduty.events
    assert event["payload"]["summary"] == "Test alert from SecOps on-call"
    assert "accepted by PagerDuty (202)" in shown_messages(response)[0]


def test_a_view_only_user_sees_the_key_masked_only(client, destination):
    # Read-only pages show each field's stored value; the key's would be the key itself.
    user = User.objects.create_user("viewer", password="x", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_destination"))
    client.force_login(user)

    page = page_text(client.get(change_url(destination)))

    assert MASKED_KEY in page and ROUTING_KEY not in page
    assert 'id="send-test-alert"' not in page


def test_a_managed_detection_is_read_only_with_a_banner(admin_client, destination):
    detection = make_detection("Suspicious Login Attempts", destination)
    detection.managed_by = "API"
    detection.save()

    page = page_text(admin_client.get(detection_url(detection)))
    response = admin_client.post(
        detection_url(detection),
        {
            "name": "Renamed",
            "severity": "LOW",
            "match_operator": "EQUAL",
            "match_threshold": "1",
            "match_eagerness": "EAGER",
        },
    )

    assert "Managed through the configuration API (POST /api/v1/config)" in page
    assert 'name="_save"' not in page
    assert response.status_code == 403
    detection.refresh_from_db()
    assert (detection.name, detection.severity) == ("Suspicious Login Attempts", "HIGH")


def test_the_token_list_shows_each_tokens_scope_and_last_use(admin_client, db):
    create_api_token(name="engine")
    authenticate_token(create_api_token(name="pipeline", scope="config"))

    page = page_text(admin_client.get(reverse("admin:detections_apitoken_changelist")))

    rows = {
        token.name: page.split(f">{token.name}<")[1].split("</tr>")[0]
        for token in ApiToken.objects.all()
    }
    assert "runs (records detection runs)" in rows["engine"] and "never" in rows["engine"]
    assert "config (exports and applies the configuration)" in rows["pipeline"]
    assert "never" not in rows["pipeline"]
