import pytest

pytest_plugins = ["tests.fake_pagerduty.pytest_plugin", "tests.leak_guard"]

# A key that looks like PagerDuty's: 32 letters and digits. Its tail is what may be shown.
ROUTING_KEY = "Rk7Q2mZp9LxW4vT8nB3cY6hJ1dF5gS0e"
OTHER_ROUTING_KEY = "Zy9X8w7V6u5T4s3R2q1P0onMlKjIhGfE"


@pytest.fixture
def destination(db):
    from destinations.models import Destination

    dest = Destination(name="SecOps on-call", component="auth", group="prod")
    dest.set_routing_key(ROUTING_KEY)
    dest.save()
    return dest
