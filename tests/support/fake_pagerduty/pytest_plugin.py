"""Pytest fixture that points the project at a fresh fake PagerDuty for one test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from .server import FakePagerDuty

if TYPE_CHECKING:
    from pytest_django.fixtures import SettingsWrapper


@pytest.fixture
def fake_pagerduty(settings: SettingsWrapper) -> Iterator[FakePagerDuty]:
    """Run a fake PagerDuty for one test and send every destination's events to it."""
    with FakePagerDuty() as fake:
        settings.PAGERDUTY_EVENTS_URL = fake.url
        yield fake
