"""GET /healthz: is the database reachable, and is the delivery queue moving?"""

import logging

from django.db import DatabaseError
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from destinations.health import QueueFigures, queue_health

logger = logging.getLogger("project.health")


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with queue figures while the database answers, 503 when it does not."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"status": "error", "method": "Use GET."}, status=405)
        response["Allow"] = "GET, HEAD"
        return response
    try:
        queue = queue_health(now=timezone.now(), count_delivered=False)
    except DatabaseError as error:
        # The reason shown is the error's kind only: this page is public, and a driver's
        # message can name hosts and users.
        logger.error("health.database_unreachable error=%s", error)
        return JsonResponse(
            {"status": "error", "database": f"unreachable ({type(error).__name__})"}, status=503
        )
    # The top-level figures are the pages detections send, which monitors alert on; tests
    # (test alerts and their resolves) are counted apart, so a failed or stuck test never
    # reads as an outage.
    return JsonResponse(
        {
            "status": "ok",
            "database": "ok",
            **_figures(queue),
            "tests": _figures(queue.tests),
        }
    )


def _figures(queue: QueueFigures) -> dict[str, int | float | None]:
    age = queue.oldest_pending_age
    return {
        "pending": queue.pending,
        "oldest_pending_age_seconds": None if age is None else round(age.total_seconds(), 3),
        "failed_last_24h": queue.failed_recently,
    }
