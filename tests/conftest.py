import pytest

from tests.support.routing_keys import ROUTING_KEY

pytest_plugins = ["tests.support.fake_pagerduty.pytest_plugin", "tests.support.leak_guard"]


@pytest.fixture
def destination(db):
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
