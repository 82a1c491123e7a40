"""A destination's summary template: the summary PagerDuty shows, shaped by the admin (§10)."""

import json
import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from destinations.models import Destination
from destinations.pagerduty.events import (
    ELLIPSIS,
    SUMMARY_MAX_LENGTH,
    DestinationOptions,
    RunFacts,
    build_trigger_event,
)
from tests.support.admin_pages import change_url, page_text
from tests.support.factories import (
    DETECTION_NAME,
    drain,
    make_destination,
    make_detection,
    post_run,
    record_run,
    run_body,
)
from tests.support.routing_keys import ROUTING_KEY
from tests.support.run_facts import REFERENCE_RUN

TEMPLATE = "[{severity}] {outcome} {detection_name} - {replay_link}"
LINK = "https://app.example.com/replay/123"

RUN = replace(
    REFERENCE_RUN,
    detection_name=DETECTION_NAME,
    description="",
    run_id="run-1",
    ran_at=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    match_exhaustiveness=None,
    search_id=None,
    trace_id=None,
    replay_link=LINK,
)


def summary(template: str, run: RunFacts = RUN, destination: str = "SecOps on-call") -> str:
    options = DestinationOptions(summary_template=template, destination_name=destination)
    event = build_trigger_event(
        run=run, options=options, default_source="tests", client="tests", client_url=""
    )
    return event["payload"]["summary"]


# Through the API, the worker and the fake PagerDuty.


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"match_count": 0, "errors": ["search timed out"]},
            f"[HIGH] ERROR {DETECTION_NAME} - {LINK}",
        ),
        ({"match_count": 5}, f"[HIGH] MATCHED {DETECTION_NAME} - {LINK}"),
    ],
    ids=["error", "matched"],
)
def test_pagerduty_gets_the_templated_summary_telling_error_from_matched(
    client, token, fake_pagerduty, changes, expected
):
    destination = make_destination("SecOps on-call", ROUTING_KEY, summary_template=TEMPLATE)
    make_detection(DETECTION_NAME, destination, severity="HIGH")
    body = run_body(replay_link=LINK, **changes)
    assert post_run(client, body, token).status_code == 201

    drain()

    [event] = fake_pagerduty.events
    assert event["payload"]["summary"] == expected


@pytest.mark.django_db(transaction=True)
def test_without_a_template_the_standard_summary_is_unchanged(client, token, fake_pagerduty):
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    make_detection(DETECTION_NAME, destination, severity="HIGH")
    assert post_run(client, run_body(match_count=0, errors=["x"]), token).status_code == 201

    drain()

    [event] = fake_pagerduty.events
    assert event["payload"]["summary"] == f"[HIGH] {DETECTION_NAME}"


@pytest.mark.django_db(transaction=True)
def test_test_alerts_keep_their_own_summary(admin_client, fake_pagerduty):
    destination = make_destination("SecOps on-call", ROUTING_KEY, summary_template=TEMPLATE)

    admin_client.post(reverse("admin:destinations_destination_test_alert", args=[destination.pk]))

    [event] = fake_pagerduty.events
    assert event["payload"]["summary"] == "Test alert from SecOps on-call"


@pytest.mark.django_db
def test_the_event_preview_shows_the_templated_summary(admin_client):
    destination = make_destination(
        "SecOps on-call",
        ROUTING_KEY,
        summary_template="{outcome}: {detection_name} ({destination})",
    )

    page = page_text(admin_client.get(change_url(destination)))

    match = re.search(r'<pre class="event-preview" id="event-preview">(.*?)</pre>', page, re.S)
    assert json.loads(match.group(1))["payload"]["summary"] == (
        "MATCHED: Suspicious Login Attempts (SecOps on-call)"
    )


# The builder: what each template yields.


def test_every_placeholder_is_filled_and_doubled_braces_are_literal():
    assert summary("{{{run_type}}} {match_count} hits for {destination}: {severity}") == (
        "{SCHEDULED} 12 hits for SecOps on-call: HIGH"
    )


def test_nothing_in_a_value_is_formatted_again():
    run = replace(RUN, detection_name="{replay_link} {0.__class__} {{x}}")
    assert summary("{detection_name}!", run) == "{replay_link} {0.__class__} {{x}}!"


def test_a_run_without_a_link_leaves_the_templates_own_text_as_written():
    assert (
        summary(TEMPLATE, replace(RUN, replay_link=None)) == f"[HIGH] MATCHED {DETECTION_NAME} - "
    )


def test_a_template_that_comes_out_blank_gives_the_standard_summary():
    assert summary("  {replay_link}", replace(RUN, replay_link=None)) == f"[HIGH] {DETECTION_NAME}"


@pytest.mark.django_db
def test_a_template_stored_without_the_form_never_stops_the_page():
    # Refused on save; one written straight to the database gets the standard summary.
    destination = make_destination("SecOps on-call", ROUTING_KEY)
    Destination.objects.filter(pk=destination.pk).update(summary_template="{nope}")
    detection = make_detection(DETECTION_NAME, destination, severity="HIGH")

    _, [delivery] = record_run(detection, "run-1", replay_link=LINK)

    assert delivery.event["payload"]["summary"] == f"[HIGH] {DETECTION_NAME} - {LINK}"


def test_a_long_name_is_shortened_and_the_link_kept_whole():
    run = replace(RUN, detection_name="N" * 2000)
    text = summary("{outcome} {detection_name} - {replay_link}", run)
    assert len(text) == SUMMARY_MAX_LENGTH
    assert text.startswith("MATCHED NNN")
    assert text.endswith(f"N{ELLIPSIS} - {LINK}")


def test_a_repeated_name_shrinks_in_every_place():
    run = replace(RUN, detection_name="N" * 2000)
    text = summary("{detection_name} | {detection_name} | {replay_link}", run)
    assert len(text) <= SUMMARY_MAX_LENGTH
    first, second, link = text.split(" | ")
    assert first == second and first.endswith(ELLIPSIS)
    assert link == LINK


def test_a_link_too_long_for_any_summary_is_cut_last():
    link = "https://app.example.com/replay/" + "x" * 2000
    text = summary(TEMPLATE, replace(RUN, replay_link=link, detection_name="N" * 100))
    assert len(text) == SUMMARY_MAX_LENGTH
    # The name keeps its first 32 characters; the link is what is cut.
    assert text.startswith("[HIGH] MATCHED " + "N" * 31 + ELLIPSIS + " - https://app.example.com/")
    assert text.endswith(ELLIPSIS)


def test_template_text_longer_than_a_summary_is_cut_to_1024():
    text = summary("{destination}" * 10, destination="D" * 200)
    assert len(text) == SUMMARY_MAX_LENGTH
    assert text.endswith(ELLIPSIS)
