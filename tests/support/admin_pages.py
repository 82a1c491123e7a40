"""Reading admin pages as an admin sees them."""

import html

from django.urls import reverse

from tests.support.routing_keys import ROUTING_KEY


def change_url(destination) -> str:
    """The destination's change page in the admin."""
    return reverse("admin:destinations_destination_change", args=[destination.pk])


def page_text(response) -> str:
    """The page of a 200 answer with its HTML entities decoded, as a reader sees the text."""
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def shown_messages(response) -> list[str]:
    """The messages the admin showed after an action."""
    return [str(message) for message in response.context["messages"]]


def destination_form_data(**overrides) -> dict:
    """The destination form's fields as a browser posts them, with `overrides`."""
    data = {
        "name": "SecOps on-call",
        "enabled": "on",
        "region": "us",
        "routing_key": ROUTING_KEY,
        "severity_override": "",
        "component": "",
        "group": "",
        "event_class": "",
        "custom_details": "",
        "timeout_seconds": "30",
        "fallback": "",
        "summary_template": "",
    }
    data.update(overrides)
    return data


def field_errors(response, field: str) -> list[str]:
    """The errors a refused admin form shows on one field."""
    assert response.status_code == 200, "the form was accepted"
    return list(response.context["adminform"].form.errors.get(field, []))
