"""The destination form as a browser submits it: the values it renders save as they are."""

from django.urls import reverse

from destinations.forms import DestinationForm
from destinations.models import Destination, Region, SeverityOverride
from tests.support.rendered_forms import rendered_form_data
from tests.support.routing_keys import ROUTING_KEY

ADD_URL = reverse("admin:destinations_destination_add")


def test_a_new_form_renders_custom_details_as_an_empty_object():
    field = DestinationForm()["custom_details"]

    assert field.value() == "{}"
    assert ">\n{}</textarea>" in str(field)


def test_the_add_page_saves_with_only_a_name_and_a_key_left_as_rendered(admin_client):
    page = admin_client.get(ADD_URL).content.decode()
    data = rendered_form_data(page, form_id="destination_form", pressed="_save")
    data["name"] = ["SecOps on-call"]
    data["routing_key"] = [ROUTING_KEY]

    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    saved = Destination.objects.get()
    assert saved.name == "SecOps on-call"
    assert saved.routing_key == ROUTING_KEY
    assert saved.custom_details == {}
    assert saved.enabled is True
    assert saved.region == Region.US
    assert saved.severity_override == SeverityOverride.AUTOMATIC
    assert (saved.component, saved.group, saved.event_class) == ("", "", "")
    assert saved.timeout_seconds == 30


def test_a_cleared_custom_details_box_saves_as_an_empty_object(admin_client):
    page = admin_client.get(ADD_URL).content.decode()
    data = rendered_form_data(page, form_id="destination_form", pressed="_save")
    data.update(name=["SecOps on-call"], routing_key=[ROUTING_KEY], custom_details=["  \n"])

    response = admin_client.post(ADD_URL, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert Destination.objects.get().custom_details == {}
