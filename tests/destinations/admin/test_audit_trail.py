"""A destination's History page: every change with who, when, how, and old → new; no key."""

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from destinations.models import Destination
from tests.support.admin_pages import change_url, destination_form_data
from tests.support.audit_trail import assert_trail_holds_no_secret, history_page
from tests.support.factories import make_destination
from tests.support.leak_guard import register_secret
from tests.support.rendered_forms import rendered_form_data
from tests.support.routing_keys import MASKED_KEY, OTHER_ROUTING_KEY, ROUTING_KEY

# A new key whose masked form is the one an admin reads in the trail.
NEW_KEY = "Nw3Pq8Rt2Vx6Zb9Hk4Jm7Lc1Fg0sC5d6"
LIST_URL = reverse("admin:destinations_destination_changelist")
CHANGES_URL = reverse("admin:destinations_historicaldestination_changelist")


@pytest.fixture(autouse=True)
def _guard_the_new_key():
    register_secret(NEW_KEY)


def edit_through_the_form(client, destination, **changes):
    """Submit the change form as a browser would: what it renders, with `changes` typed in."""
    page = client.get(change_url(destination)).content.decode()
    data = rendered_form_data(page, form_id="destination_form", pressed="_save")
    data.update({name: [value] for name, value in changes.items()})
    response = client.post(change_url(destination), data)
    assert response.status_code == 302, response.context and response.context["errors"]


def test_severity_and_key_edits_show_old_and_new_values_and_only_the_masked_key(
    admin_client, admin_user
):
    destination = make_destination("SecOps on-call", ROUTING_KEY, severity_override="warning")

    edit_through_the_form(
        admin_client, destination, severity_override="critical", routing_key=NEW_KEY
    )

    page = history_page(admin_client, destination)
    assert "severity override: warning → critical" in page
    assert "key changed (••••C5d6)" in page
    [change] = page.split('<tr class="audit-entry">')[1:2]
    assert admin_user.get_username() in change and ">admin<" in change  # who, and via the admin
    # The creation (made outside the admin) is kept too, its key masked.
    assert f"key set ({MASKED_KEY})" in page
    assert NEW_KEY not in page and ROUTING_KEY not in page
    # Django's own admin log still records the change.
    assert LogEntry.objects.filter(object_id=str(destination.pk)).exists()
    assert "Changed Integration key and Severity override." in page
    assert_trail_holds_no_secret()


def test_a_destination_added_in_the_admin_starts_its_trail(admin_client, admin_user):
    response = admin_client.post(
        reverse("admin:destinations_destination_add"),
        destination_form_data(severity_override="critical"),
    )
    assert response.status_code == 302
    destination = Destination.objects.get()

    page = history_page(admin_client, destination)

    assert f"key set ({MASKED_KEY})" in page
    assert "severity override: critical" in page
    assert page.count('<tr class="audit-entry">') == 1


def test_a_save_that_keeps_the_key_says_nothing_of_the_key(admin_client):
    destination = make_destination("SecOps on-call", ROUTING_KEY)

    edit_through_the_form(admin_client, destination, component="identity")

    page = history_page(admin_client, destination)
    assert "component: (blank) → identity" in page
    assert "key changed" not in page


def test_the_same_key_typed_again_is_not_a_key_change(admin_client):
    destination = make_destination("SecOps on-call", ROUTING_KEY)

    edit_through_the_form(admin_client, destination, routing_key=ROUTING_KEY)

    assert "key changed" not in history_page(admin_client, destination)


def test_the_enable_and_disable_actions_are_kept_for_each_destination(admin_client, admin_user):
    first = make_destination("SecOps on-call", ROUTING_KEY)
    second = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    already_off = make_destination("Retired rota", "A" * 32, enabled=False)
    selected = [first.pk, second.pk, already_off.pk]

    response = admin_client.post(
        LIST_URL, {"action": "disable_selected", "_selected_action": selected}, follow=True
    )

    assert "2 destinations disabled." in response.content.decode()
    assert not Destination.objects.filter(enabled=True).exists()
    for destination in (first, second):
        page = history_page(admin_client, destination)
        assert "enabled: yes → no" in page
        assert admin_user.get_username() in page
    assert "enabled: yes → no" not in history_page(admin_client, already_off)


def test_the_actions_leave_records_a_file_manages_alone_and_say_so(admin_client):
    managed = make_destination("SecOps on-call", ROUTING_KEY, managed_by="config/site.yml")

    response = admin_client.post(
        LIST_URL, {"action": "disable_selected", "_selected_action": [managed.pk]}, follow=True
    )

    assert (
        "0 destinations disabled. 1 managed by a configuration file left unchanged: change it "
        "in the file." in response.content.decode()
    )
    assert Destination.objects.get().enabled
    assert "enabled: yes → no" not in history_page(admin_client, managed)


def test_a_deleted_destination_keeps_its_trail(admin_client):
    destination = make_destination("SecOps on-call", ROUTING_KEY, severity_override="warning")
    edit_through_the_form(admin_client, destination, severity_override="critical")
    delete = reverse("admin:destinations_destination_delete", args=[destination.pk])

    assert admin_client.post(delete, {"post": "yes"}).status_code == 302

    assert not Destination.objects.exists()
    listing = admin_client.get(CHANGES_URL, {"id": destination.pk}).content.decode()
    assert "SecOps on-call" in listing
    assert "Deleted" in listing or "deleted" in listing
    assert "severity override: warning → critical" in listing
    assert_trail_holds_no_secret()


def test_the_list_of_changes_is_read_only(admin_client):
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    record = Destination.history.get(id=destination.pk)
    opts = Destination.history.model._meta

    change = reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[record.pk])
    page = admin_client.get(change).content.decode()

    assert 'name="_save"' not in page
    assert admin_client.post(change, {"name": "tampered"}).status_code == 403
    assert (
        admin_client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_add")).status_code
        == 403
    )
