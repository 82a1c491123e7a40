"""Reading admin pages as an admin sees them."""

import html

from django.urls import reverse


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
