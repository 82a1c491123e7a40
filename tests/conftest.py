"""Fixtures that tests of every folder use, and the suite's plugins: fake PagerDuty, leak guard."""

import pytest

from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytest_plugins = ["tests.support.fake_pagerduty.pytest_plugin", "tests.support.leak_guard"]


@pytest.fixture
def destination(db):
    """The suite's destination: "SecOps on-call", holding ROUTING_KEY."""
    from tests.support.factories import make_destination

    return make_destination("SecOps on-call", ROUTING_KEY, component="auth", group="prod")


@pytest.fixture
def configured_destination(db):
    """A destination with every optional field set: override, component, group, class, details."""
    from tests.support.factories import make_destination

    return make_destination(
        "SecOps on-call",
        ROUTING_KEY,
        severity_override="critical",
        component="auth",
        group="prod",
        event_class="security",
        custom_details={"team": "secops", "runbook": "https://wiki.example.com/runbooks/logins"},
    )


@pytest.fixture
def token(db) -> str:
    """A detection engine's API token."""
    from detections.tokens import create_api_token

    return create_api_token(name="engine")


@pytest.fixture
def detection(destination):
    """A HIGH detection paging `destination` and a second destination, with a disabled third."""
    from tests.support.factories import DETECTION_NAME, make_destination, make_detection

    second = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    disabled = make_destination("Retired rota", "A" * 32, enabled=False)
    return make_detection(DETECTION_NAME, destination, second, disabled, severity="HIGH")
