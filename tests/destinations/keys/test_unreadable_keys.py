"""A routing key no configured encryption key can decrypt: shown as such, no crash, no page lost."""

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.urls import reverse

from destinations.models import Delivery, DeliveryStatus, Destination
from tests.support.factories import drain, make_destination, queue_event
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

LOST_KEY = Fernet.generate_key().decode()


@pytest.fixture
def orphaned(db, settings):
    """A destination stored under an encryption key that was then dropped from the settings."""
    current = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [LOST_KEY]
    destination = make_destination("Orphaned", ROUTING_KEY)
    settings.FIELD_ENCRYPTION_KEYS = current
    return destination


def test_admin_list_and_change_page_say_so_instead_of_failing(admin_client, orphaned):
    make_destination("Healthy", OTHER_ROUTING_KEY)
    listing = admin_client.get(reverse("admin:destinations_destination_changelist"))
    assert listing.status_code == 200
    page = listing.content.decode()
    assert "⚠ unreadable" in page
    assert "••••" + OTHER_ROUTING_KEY[-4:] in page

    change = admin_client.get(reverse("admin:destinations_destination_change", args=[orphaned.pk]))
    assert change.status_code == 200
    assert "⚠ unreadable" in change.content.decode()


def test_entering_the_key_again_repairs_the_destination(admin_client, orphaned):
    url = reverse("admin:destinations_destination_change", args=[orphaned.pk])
    data = {
        "name": "Orphaned",
        "enabled": "on",
        "region": "us",
        "routing_key": OTHER_ROUTING_KEY,
        "severity_override": "",
        "custom_details": "{}",
        "timeout_seconds": "30",
    }
    assert admin_client.post(url, data).status_code == 302
    assert Destination.objects.get(pk=orphaned.pk).routing_key == OTHER_ROUTING_KEY


def test_editing_other_fields_keeps_the_unreadable_token_untouched(admin_client, orphaned):
    before = Destination.objects.filter(pk=orphaned.pk).values_list("updated_at", flat=True)
    url = reverse("admin:destinations_destination_change", args=[orphaned.pk])
    data = {
        "name": "Orphaned",
        "enabled": "on",
        "region": "eu",
        "routing_key": "",
        "severity_override": "",
        "custom_details": "{}",
        "timeout_seconds": "30",
    }
    assert admin_client.post(url, data).status_code == 302
    assert list(before)
    from django.test.utils import override_settings

    with override_settings(FIELD_ENCRYPTION_KEYS=[LOST_KEY]):
        restored = Destination.objects.get(pk=orphaned.pk)
        assert restored.routing_key == ROUTING_KEY  # still the original, recoverable token
        assert restored.region == "eu"


def test_system_check_names_the_destination(orphaned):
    from django.core.management.base import SystemCheckError

    with pytest.raises(SystemCheckError) as failed:
        call_command("check", databases=["default"])
    assert "destinations.E002" in str(failed.value)
    assert "Orphaned" in str(failed.value)


@pytest.mark.django_db(transaction=True)
def test_its_deliveries_wait_and_are_sent_once_the_key_is_restored(settings, fake_pagerduty):
    current = list(settings.FIELD_ENCRYPTION_KEYS)
    settings.FIELD_ENCRYPTION_KEYS = [LOST_KEY]
    destination = make_destination("Orphaned", ROUTING_KEY)
    settings.FIELD_ENCRYPTION_KEYS = current
    delivery = queue_event(destination, "k-1")

    drain()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING  # retried, not lost
    assert "cannot be decrypted" in delivery.last_error
    assert fake_pagerduty.received == []

    settings.FIELD_ENCRYPTION_KEYS = [*current, LOST_KEY]
    drain(at=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.DELIVERED
    assert fake_pagerduty.events[0]["routing_key"] == ROUTING_KEY
    assert Delivery.objects.count() == 1


def test_send_test_alert_reports_it_without_a_traceback(orphaned):
    from django.core.management import CommandError

    with pytest.raises(CommandError, match="cannot be decrypted"):
        call_command("send_test_alert", "Orphaned")
