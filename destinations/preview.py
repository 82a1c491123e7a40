"""The event a sample matched run would send to a destination, shown in the admin before any run."""

import json
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from project import PRODUCT_NAME

from .delivery import destination_options
from .models import Destination
from .pagerduty.events import EVENT_MAX_BYTES, RunFacts, build_trigger_event, event_size

SAMPLE_DETECTION_NAME = "Suspicious Login Attempts"
SAMPLE_SEVERITY = "HIGH"
SAMPLE_THRESHOLD = 10
SAMPLE_COUNT = 42
SAMPLE_REPLAY_LINK = "https://app.example.com/replay/123"
# How the admin describes the sample, so nobody mistakes it for a real run.
SAMPLE_RUN_DESCRIPTION = (
    f"a made-up {SAMPLE_SEVERITY} run of “{SAMPLE_DETECTION_NAME}” with {SAMPLE_COUNT} matches "
    f"(more than {SAMPLE_THRESHOLD})"
)


@dataclass(frozen=True)
class EventPreview:
    """A sample event as pretty JSON with the key masked, and its size as PagerDuty counts it."""

    event: dict
    size: int
    limit: int = EVENT_MAX_BYTES

    @property
    def json(self) -> str:
        return json.dumps(self.event, indent=2, ensure_ascii=False)

    @property
    def share_of_limit(self) -> str:
        return f"{self.size / self.limit:.1%}"


def sample_run() -> RunFacts:
    """A made-up MATCHED run with a replay link, built from plain values; nothing is stored."""
    ran_at = timezone.now().replace(microsecond=0)
    return RunFacts(
        detection_id="00000000-0000-4000-8000-000000000042",
        detection_name=SAMPLE_DETECTION_NAME,
        description="More failed logins for one account than usual.",
        severity=SAMPLE_SEVERITY,
        match_operator="GREATER_THAN",
        match_threshold=SAMPLE_THRESHOLD,
        match_eagerness="EAGER",
        outcome="MATCHED",
        match_count=SAMPLE_COUNT,
        run_type="SCHEDULED",
        run_id="sample-run",
        ran_at=ran_at,
        range_start=ran_at - timedelta(hours=1),
        range_end=ran_at,
        replay_link=SAMPLE_REPLAY_LINK,
    )


def preview_event(destination: Destination) -> EventPreview:
    """The trigger a sample run would send to this destination, its key shown masked only."""
    event = build_trigger_event(
        run=sample_run(),
        options=destination_options(destination),
        default_source=settings.PAGERDUTY_DEFAULT_SOURCE,
        client=PRODUCT_NAME,
        client_url=settings.SITE_URL,
    )
    # The size is measured with a key of the real length; the shown key is only its masked form.
    return EventPreview(
        event={"routing_key": destination.masked_routing_key, **event},
        size=event_size(event),
    )
