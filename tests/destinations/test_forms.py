"""The destination form as an admin meets it: what it renders saves; fallback and template rules."""

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from destinations.forms import DestinationForm
from destinations.models import Destination, Region, SeverityOverride
from tests.support.admin_pages import change_url, destination_form_data, field_errors, page_text
from tests.support.factories import make_destination
from tests.support.rendered_forms import rendered_form_data
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db

ADD_URL = reverse("admin:destinations_destination_add")


# Summary template


def test_a_template_with_the_allowed_placeholders_is_saved(admin_client):
    template = "[{severity}] {outcome} {detection_name} - {replay_link} {{ok}}"
    response = admin_client.post(ADD_URL, destination_form_data(summary_template=template))

    assert response.status_code == 302
    assert Destination.objects.get().summary_template == template


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("[{severity}] {nope}", "Unknown placeholder {nope}. Use one of {severity}, "),
        (
            "{detection_name.__class__}",
            "Placeholder {detection_name.__class__} is refused: placeholders are plain names, "
            "without attribute or index access. Write {detection_name}.",
        ),
        ("{detection_name[0]}", "Placeholder {detection_name[0]} is refused"),
        ("{}", "Unknown placeholder {}."),
        ("{severity!r}", "Placeholder {severity} has a conversion (!r), which is not supported."),
        ("{match_count:>5}", "Placeholder {match_count} has a format (:>5), which is not"),
        ("{severity", "write {{ or }} for a literal brace"),
    ],
)
def test_a_template_that_would_not_just_insert_values_is_refused(admin_client, template, message):
    response = admin_client.post(ADD_URL, destination_form_data(summary_template=template))

    [error] = field_errors(response, "summary_template")
    assert message in error
    assert not Destination.objects.exists()


def test_a_refused_template_on_an_existing_destination_changes_nothing(admin_client, destination):
    response = admin_client.post(
        change_url(destination),
        destination_form_data(routing_key="", summary_template="{nope}", group="x"),
    )

    assert "Unknown placeholder {nope}" in field_errors(response, "summary_template")[0]
    destination.refresh_from_db()
    assert (destination.summary_template, destination.group) == ("", "prod")


# Fallback


def test_a_fallback_is_saved_and_the_list_of_choices_leaves_out_the_destination_itself(
    admin_client, destination
):
    other = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    page = page_text(admin_client.get(change_url(destination)))
    assert f'<option value="{other.pk}">Platform on-call</option>' in page
    assert f'<option value="{destination.pk}"' not in page

    response = admin_client.post(
        change_url(destination), destination_form_data(routing_key="", fallback=str(other.pk))
    )

    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.fallback == other


def test_a_destination_cannot_fall_back_to_itself(admin_client, destination):
    response = admin_client.post(
        change_url(destination), destination_form_data(routing_key="", fallback=str(destination.pk))
    )

    assert field_errors(response, "fallback")
    destination.refresh_from_db()
    assert destination.fallback is None


def test_a_fallback_that_would_close_a_loop_is_refused(admin_client, destination):
    platform = make_destination("Platform on-call", OTHER_ROUTING_KEY, fallback=destination)
    backstop = make_destination("Backstop", "C" * 32, fallback=platform)

    response = admin_client.post(
        change_url(destination), destination_form_data(routing_key="", fallback=str(backstop.pk))
    )

    assert field_errors(response, "fallback") == [
        "That would be a loop: SecOps on-call → Backstop → Platform on-call → SecOps on-call. "
        "Pick another fallback."
    ]
    destination.refresh_from_db()
    assert destination.fallback is None


def test_a_chain_without_a_loop_is_allowed(admin_client, destination):
    backstop = make_destination("Backstop", "C" * 32)
    platform = make_destination("Platform on-call", OTHER_ROUTING_KEY, fallback=backstop)

    response = admin_client.post(
        change_url(destination), destination_form_data(routing_key="", fallback=str(platform.pk))
    )

    assert response.status_code == 302
    destination.refresh_from_db()
    assert destination.fallback == platform


def test_the_model_refuses_a_fallback_to_itself_on_any_full_clean(destination):
    destination.fallback = destination
    with pytest.raises(ValidationError, match="cannot fall back to itself"):
        destination.full_clean()


def test_the_form_tells_an_on_call_admin_what_the_fields_do(admin_client):
    page = page_text(admin_client.get(ADD_URL))
    assert "One hop only: if the fallback fails too, nothing more is tried." in page
    assert "test alerts never fall back" in page
    assert "{severity}, {detection_name}, {replay_link}, {outcome}, {match_count}" in page
    assert "Write {{ and }} for literal braces." in page


@pytest.mark.parametrize("page", ["add", "change"])
def test_the_key_input_asks_browsers_not_to_fill_in_a_saved_password(admin_client, page):
    url = ADD_URL if page == "add" else change_url(make_destination("SecOps", ROUTING_KEY))

    inputs = [
        tag for tag in _tags(admin_client.get(url), "input") if tag.get("name") == "routing_key"
    ]

    # "off" is ignored on password inputs: browsers offered the admin's own password here.
    assert inputs == [
        {
            "type": "password",
            "name": "routing_key",
            "autocomplete": "new-password",
            "id": "id_routing_key",
            "aria-describedby": "id_routing_key_helptext",
        }
    ]


def _tags(response, name: str) -> list[dict]:
    from html.parser import HTMLParser

    found = []

    class Reader(HTMLParser):
        def handle_starttag(self, tag, attrs):
            if tag == name:
                found.append(dict(attrs))

    Reader().feed(response.content.decode())
    return found


# What the form renders saves as it is.


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
