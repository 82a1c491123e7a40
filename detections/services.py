"""Recording a detection run and queueing its deliveries: the one service behind the API and CLI."""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.utils import timezone

from destinations.delivery.outbox import enqueue_run_deliveries
from destinations.delivery.routing import Route, routes
from destinations.models import Delivery, Destination
from destinations.pagerduty.client import REGION_EVENTS_URLS, events_url
from destinations.pagerduty.events import dedup_key_for
from destinations.tallies import add_to_tallies

from .intake import RunFields, validate_run_body
from .models import Detection, DetectionRun, RunOutcomeTally, RunType
from .outcomes import evaluate_outcome, matching_count

logger = logging.getLogger("detections.intake")

# The stored run's fields that a repeated post is compared on, to warn when they differ. The run's
# admin page lists most of the same fields for its own purpose (what a reader sees), so the two
# lists are kept apart on purpose.
_COMPARED_FIELDS = (
    "run_type",
    "match_count",
    "ran_at",
    "range_start",
    "range_end",
    "match_exhaustiveness",
    "search_id",
    "trace_id",
    "errors",
    "errors_total",
    "replay_link",
)


# What a test run ("Run now") covers, ending when it is made.
TEST_RUN_RANGE = timedelta(hours=1)


class DetectionNotFound(LookupError):
    """No detection has the id or name the body gave."""

    def __init__(self, fields: RunFields):
        if fields.detection_id is not None:
            message = f"No detection with id {fields.detection_id}."
        else:
            message = f"No detection with name “{fields.detection_name}”."
        self.errors = {"detection": [message]}
        super().__init__(message)


class DetectionCannotMatch(ValueError):
    """No match count of 0 or more satisfies the detection's condition, so no test run can match."""

    def __init__(self, detection: Detection):
        super().__init__(
            f"“{detection.name}” cannot match: no count of 0 or more is "
            f"{detection.get_match_operator_display()} {detection.match_threshold}."
        )


@dataclass(frozen=True, kw_only=True)
class RecordedRun:
    """A stored run, whether this call created it, and its deliveries."""

    run: DetectionRun
    created: bool
    deliveries: list[Delivery]
    warning: str = ""

    def as_response(self) -> dict:
        """The JSON answer both the API and the command give."""
        response = {
            "run_id": self.run.run_id,
            "detection_id": str(self.run.detection_id),
            "detection_name": self.run.detection.name,
            "outcome": self.run.outcome,
            "deliveries": [
                {
                    "id": delivery.pk,
                    "destination": delivery.destination.name,
                    "status": delivery.status,
                }
                for delivery in self.deliveries
            ],
        }
        if self.warning:
            response["warning"] = self.warning
        return response


@dataclass(frozen=True, kw_only=True)
class PagedDestination:
    """A destination a test run would page, its PagerDuty region and where its events go."""

    destination: Destination
    region: str  # "US" or "EU"
    events_host: str  # the region's own host, e.g. events.pagerduty.com
    # The URL this server actually posts to when PAGERDUTY_EVENTS_URL overrides the region's.
    sent_instead_to: str = ""


@dataclass(frozen=True, kw_only=True)
class RunNowPlan:
    """What a test run of one detection would record and whom it would page, before it is made."""

    detection: Detection
    match_count: int
    dedup_key: str
    paged: list[PagedDestination]
    # Destinations the detection reaches but that a run would skip, each with why.
    not_paged: list[Route]
    # Why nobody would be paged, or "" when someone would be.
    nothing_paged_because: str


# Selectors.


def find_detection(
    *, detection_id: uuid.UUID | None = None, detection_name: str | None = None
) -> Detection | None:
    """The detection with this id, or else with this exact name; None when there is none."""
    if detection_id is not None:
        return Detection.objects.filter(pk=detection_id).first()
    if detection_name is not None:
        return Detection.objects.filter(name=detection_name).first()
    return None


def recorded_run(run_id: str) -> DetectionRun | None:
    """The run already recorded under this run_id, with its detection; None when there is none."""
    return DetectionRun.objects.select_related("detection").filter(run_id=run_id).first()


def run_deliveries(run: DetectionRun) -> list[Delivery]:
    """The run's deliveries in the order they were queued, with their destinations."""
    return list(
        run.deliveries.select_related("destination")
        .defer("destination__routing_key")
        .order_by("pk")
    )


def run_now_plan(detection: Detection) -> RunNowPlan:
    """Whom a test run of the detection would page, and how, without recording anything.

    Raises DetectionCannotMatch when no count can match the detection's condition.
    """
    count = matching_count(
        match_operator=detection.match_operator, match_threshold=detection.match_threshold
    )
    if count is None:
        raise DetectionCannotMatch(detection)
    # The routing a real run follows (attached and all-detections destinations, each filtered
    # by its minimum severity): a test run always matches, so it pages exactly these.
    candidates = routes(detection)
    paged = []
    for route in candidates:
        if not route.pages:
            continue
        region_url = REGION_EVENTS_URLS[route.destination.region]
        url = events_url(route.destination.region)
        paged.append(
            PagedDestination(
                destination=route.destination,
                region=route.destination.region.upper(),
                events_host=urlsplit(region_url).hostname or region_url,
                sent_instead_to=url if url != region_url else "",
            )
        )
    if not detection.enabled:
        because = "the detection is disabled"
    elif not candidates:
        because = "no destination is attached and none receives all detections"
    elif not paged:
        because = "none of its destinations takes it (see below)"
    else:
        because = ""
    return RunNowPlan(
        detection=detection,
        match_count=count,
        dedup_key=dedup_key_for(detection.name),
        paged=paged,
        not_paged=[route for route in candidates if not route.pages],
        nothing_paged_because=because,
    )


# Services.


def record_detection_run(*, data: object) -> RecordedRun:
    """Validate a run body, store the run and queue its deliveries, or return the stored run.

    Raises InvalidRunBody (a refused field) or DetectionNotFound; nothing is stored then.
    """
    fields = validate_run_body(data)
    # A repeat is answered before the detection is looked up, so an engine retrying after a
    # rename or a timeout still hears that its run is safe.
    existing = recorded_run(fields.run_id)
    if existing is not None:
        return _repeat(existing, fields)
    detection = find_detection(
        detection_id=fields.detection_id, detection_name=fields.detection_name
    )
    if detection is None:
        raise DetectionNotFound(fields)
    return _record(detection, fields)


def record_test_run(*, detection: Detection, now: datetime | None = None) -> RecordedRun:
    """Record a MANUAL run of the detection that matches, over the last hour, and queue its pages.

    Raises DetectionCannotMatch when no count can match the detection's condition.
    """
    count = matching_count(
        match_operator=detection.match_operator, match_threshold=detection.match_threshold
    )
    if count is None:
        raise DetectionCannotMatch(detection)
    now = now or timezone.now()
    fields = RunFields(
        detection_id=detection.pk,
        detection_name=None,
        run_id=f"manual-{uuid.uuid4().hex}",
        run_type=RunType.MANUAL,
        match_count=count,
        ran_at=now,
        range_start=now - TEST_RUN_RANGE,
        range_end=now,
        match_exhaustiveness="",
        search_id="",
        trace_id="",
        errors=[],
        errors_total=0,
        replay_link="",
    )
    return _record(detection, fields)


def _record(detection: Detection, fields: RunFields) -> RecordedRun:
    """Store a new run with its outcome and queue its deliveries, in one transaction."""
    try:
        with transaction.atomic():
            run = DetectionRun.objects.create(
                detection=detection,
                run_id=fields.run_id,
                run_type=fields.run_type,
                outcome=evaluate_outcome(
                    match_operator=detection.match_operator,
                    match_threshold=detection.match_threshold,
                    match_count=fields.match_count,
                    errors=fields.errors,
                ),
                match_count=fields.match_count,
                ran_at=fields.ran_at,
                range_start=fields.range_start,
                range_end=fields.range_end,
                match_exhaustiveness=fields.match_exhaustiveness,
                search_id=fields.search_id,
                trace_id=fields.trace_id,
                errors=fields.errors,
                errors_total=fields.errors_total,
                replay_link=fields.replay_link,
            )
            deliveries = enqueue_run_deliveries(run)
            # /metrics runs_total, kept with the run: a refused or repeated post adds nothing.
            add_to_tallies(
                RunOutcomeTally, {(run.outcome,): (1,)}, key=("outcome",), values=("count",)
            )
    except IntegrityError:
        # A simultaneous post of the same run_id won the unique constraint; answer with its run.
        existing = recorded_run(fields.run_id)
        if existing is None:
            raise
        return _repeat(existing, fields)
    logger.info(
        "run.recorded run_id=%r detection=%s outcome=%s deliveries=%d",
        run.run_id,
        detection.pk,
        run.outcome,
        len(deliveries),
    )
    return RecordedRun(run=run, created=True, deliveries=deliveries)


def _repeat(run: DetectionRun, fields: RunFields) -> RecordedRun:
    """Answer a repeated run_id with the stored run, warning when the repeat says otherwise."""
    differing = [name for name in _COMPARED_FIELDS if getattr(run, name) != getattr(fields, name)]
    if fields.detection_id is not None and run.detection_id != fields.detection_id:
        differing.insert(0, "detection_id")
    if fields.detection_name is not None and run.detection.name != fields.detection_name:
        differing.insert(0, "detection_name")
    warning = ""
    if differing:
        warning = (
            f"run_id was already recorded with different {', '.join(differing)}; "
            "the stored run is returned unchanged."
        )
        logger.warning("run.repeat_differs run_id=%r fields=%s", run.run_id, ",".join(differing))
    return RecordedRun(run=run, created=False, deliveries=run_deliveries(run), warning=warning)
