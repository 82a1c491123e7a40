"""Routing as an engine and the on-call see it: a run posted to the API, the pages that arrive."""

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from destinations.models import Delivery
from tests.support.admin_pages import page_text
from tests.support.factories import make_destination, make_detection, post_run, run_body
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db(transaction=True)

ON_CALL_KEY = "Cc3Dd4Ee5Ff6Gg7Hh8Ii9Jj0Kk1Ll2Mm"


def post_and_deliver(client, token, **fields) -> dict:
    """Post a run through the API, then let the worker send what it queued."""
    response = post_run(client, run_body(**fields), token=token)
    assert response.status_code == 201, response.content
    call_command("deliver_alerts", "--once")
    return response.json()


def pages_by_key(fake_pagerduty) -> dict[str, list[str]]:
    """The summaries PagerDuty received, per routing key."""
    pages: dict[str, list[str]] = {}
    for event in fake_pagerduty.events:
        pages.setdefault(event["routing_key"], []).append(event["payload"]["summary"])
    return pages


def test_a_low_detection_does_not_page_a_destination_whose_minimum_is_high(
    client, token, fake_pagerduty
):
    high_only = make_destination("On-call engineering", ON_CALL_KEY, minimum_severity="HIGH")
    everything = make_destination("SecOps queue", ROUTING_KEY)
    make_detection("Unusual Port Scan", high_only, everything, severity="LOW")

    answer = post_and_deliver(client, token, detection_name="Unusual Port Scan")

    assert pages_by_key(fake_pagerduty) == {ROUTING_KEY: ["[LOW] Unusual Port Scan"]}
    assert [d["destination"] for d in answer["deliveries"]] == ["SecOps queue"]


def test_a_high_detection_pages_a_destination_whose_minimum_is_high(client, token, fake_pagerduty):
    high_only = make_destination("On-call engineering", ON_CALL_KEY, minimum_severity="HIGH")
    make_detection("Suspicious Login Attempts", high_only, severity="HIGH")

    post_and_deliver(client, token)

    assert pages_by_key(fake_pagerduty) == {ON_CALL_KEY: ["[HIGH] Suspicious Login Attempts"]}


def test_a_critical_detection_pages_an_unattached_all_detections_destination_exactly_once(
    client, token, fake_pagerduty
):
    on_call = make_destination(
        "On-call engineering", ON_CALL_KEY, all_detections=True, minimum_severity="CRITICAL"
    )
    # Attached and taking every detection too: still one page, not two.
    secops = make_destination("SecOps queue", ROUTING_KEY, all_detections=True)
    make_detection("Root Login From New Country", secops, severity="CRITICAL")
    assert not on_call.detections.exists()

    post_and_deliver(client, token, detection_name="Root Login From New Country")

    summary = "[CRITICAL] Root Login From New Country"
    assert pages_by_key(fake_pagerduty) == {ON_CALL_KEY: [summary], ROUTING_KEY: [summary]}
    assert Delivery.objects.count() == 2


def test_an_all_detections_destination_keeps_its_minimum_and_disabled_ones_are_skipped(
    client, token, fake_pagerduty
):
    make_destination(
        "On-call engineering", ON_CALL_KEY, all_detections=True, minimum_severity="CRITICAL"
    )
    make_destination("Retired rota", OTHER_ROUTING_KEY, all_detections=True, enabled=False)
    secops = make_destination("SecOps queue", ROUTING_KEY)
    make_detection("Suspicious Login Attempts", secops, severity="HIGH")

    post_and_deliver(client, token)

    assert pages_by_key(fake_pagerduty) == {ROUTING_KEY: ["[HIGH] Suspicious Login Attempts"]}


def test_a_disabled_detection_pages_no_all_detections_destination(client, token, fake_pagerduty):
    make_destination("On-call engineering", ON_CALL_KEY, all_detections=True)
    make_detection("Suspicious Login Attempts", severity="CRITICAL", enabled=False)

    answer = post_and_deliver(client, token)

    assert answer["deliveries"] == []
    assert fake_pagerduty.received == []


def test_routing_set_in_the_admin_form_is_explained_listed_and_obeyed(
    admin_client, token, fake_pagerduty
):
    add_url = reverse("admin:destinations_destination_add")
    form = page_text(admin_client.get(add_url))
    assert "Page this destination only for detections at or above this severity" in form
    assert "Receive the pages of every detection, attached to it or not" in form
    assert "Off: incidents stay open for a person to resolve" in form

    response = admin_client.post(
        add_url,
        {
            "name": "On-call engineering",
            "enabled": "on",
            "region": "us",
            "routing_key": ON_CALL_KEY,
            "timeout_seconds": "30",
            "minimum_severity": "CRITICAL",
            "all_detections": "on",
            "auto_resolve": "on",
        },
    )
    assert response.status_code == 302, response.context["errors"]
    listing = page_text(admin_client.get(reverse("admin:destinations_destination_changelist")))
    assert "CRITICAL only · all detections · auto-resolve" in listing

    make_detection("Root Login From New Country", severity="CRITICAL")
    make_detection("Unusual Port Scan", severity="HIGH")
    engine = Client()  # the API is called with the token, not the admin's session
    post_and_deliver(engine, token, detection_name="Unusual Port Scan")
    post_and_deliver(engine, token, run_id="run-2", detection_name="Root Login From New Country")

    assert pages_by_key(fake_pagerduty) == {ON_CALL_KEY: ["[CRITICAL] Root Login From New Country"]}
