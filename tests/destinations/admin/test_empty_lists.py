"""Every admin list says what fills it while empty, and a search that finds nothing says so."""

import pytest
from django.urls import reverse

from tests.support.admin_pages import page_text

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("url_name", "message", "plural"),
    [
        ("admin:destinations_destination_changelist", "No destinations yet.", "destinations"),
        ("admin:destinations_delivery_changelist", "No deliveries yet.", "deliveries"),
        ("admin:detections_detection_changelist", "No detections yet.", "detections"),
        ("admin:detections_detectionrun_changelist", "No runs yet.", "detection runs"),
        ("admin:detections_apitoken_changelist", "No API tokens yet.", "API tokens"),
    ],
)
def test_empty_lists_say_what_fills_them(admin_client, url_name, message, plural):
    url = reverse(url_name)

    assert message in page_text(admin_client.get(url))
    # A search that finds nothing is not an empty list, and says so.
    searched = page_text(admin_client.get(url, {"q": "nothing-like-this"}))
    assert message not in searched
    assert f"No {plural} match this search or these filters." in searched
