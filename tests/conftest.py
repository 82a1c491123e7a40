import pytest

from tests.support.routing_keys import ROUTING_KEY

pytest_plugins = ["tests.support.fake_pagerduty.pytest_plugin", "tests.support.leak_guard"]


@pytest.fixture
def destination(db):
    from tests.support.factories import make_destination

    return make_destination("SecOps on-call", ROUTING_KEY, component="auth", group="prod")
