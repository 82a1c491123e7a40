"""Routing: which destinations a detection's run pages, and why (the one place that decides)."""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, Q

from detections.models import Detection, Severity

from ..models import Destination

# Least to most severe: a destination's minimum lets through its own rank and those above it.
SEVERITY_RANK = {
    Severity.LOW: 1,
    Severity.MEDIUM: 2,
    Severity.HIGH: 3,
    Severity.CRITICAL: 4,
}

ATTACHED = "attached"
ALL_DETECTIONS = "all detections"


@dataclass(frozen=True)
class Route:
    """One destination a run of the detection could reach: whether it pages it, and why."""

    destination: Destination
    pages: bool
    reason: str  # "attached", "all detections", or "skipped: …"
    via: str  # how it is reached: attached, all detections, or both


def meets_minimum(severity: str, minimum: str) -> bool:
    """Whether a detection of this severity reaches a destination with this minimum (blank: all)."""
    return not minimum or SEVERITY_RANK[severity] >= SEVERITY_RANK[minimum]


def routes(detection: Detection) -> list[Route]:
    """Every destination attached to the detection or taking all detections, paged or skipped.

    Each destination appears once, however it is reached, in the order destinations were added
    (the order a run queues its pages in).
    """
    attached = Detection.destinations.through.objects.filter(
        detection_id=detection.pk, destination_id=OuterRef("pk")
    )
    candidates = (
        Destination.objects.annotate(attached=Exists(attached))
        .filter(Q(attached=True) | Q(all_detections=True))
        # Routing never needs the key; leaving it undecrypted spares every run the cost.
        .defer("routing_key")
        .order_by("pk")
    )
    return [_route(detection, destination) for destination in candidates]


def destinations_to_page(detection: Detection) -> list[Destination]:
    """The destinations a MATCHED or ERROR run of the detection pages, each once."""
    return [route.destination for route in routes(detection) if route.pages]


def _route(detection: Detection, destination: Destination) -> Route:
    ways = [ATTACHED] if destination.attached else []
    if destination.all_detections:
        ways.append(ALL_DETECTIONS)
    via = " and ".join(ways)
    if not detection.enabled:
        return Route(destination, False, "skipped: the detection is disabled", via)
    if not destination.enabled:
        return Route(destination, False, "skipped: disabled", via)
    if not meets_minimum(detection.severity, destination.minimum_severity):
        skipped = f"skipped: below its minimum severity {destination.minimum_severity}"
        return Route(destination, False, skipped, via)
    return Route(destination, True, via, via)
