"""GET /healthz: is the database reachable, and is the delivery queue moving?"""

import logging
from datetime import timedelta

from django.db import DatabaseError
from django.db.models import Count, Min, Q
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache

from destinations.models import UNFINISHED, Delivery, DeliveryStatus

logger = logging.getLogger("project.health")

FAILED_WINDOW = timedelta(hours=24)


def delivery_queue_health(*, now) -> dict:
    """Unfinished deliveries, the age of the oldest, and recent failures, in one query."""
    since = now - FAILED_WINDOW
    unfinished = Q(status__in=UNFINISHED)
    recent_failure = Q(status=DeliveryStatus.FAILED, finished_at__gte=since)
    totals = Delivery.objects.filter(unfinished | recent_failure).aggregate(
        pending=Count("pk", filter=unfinished),
        # queued_at, not created_at: "Retry now" re-queues, and the age limit counts from there.
        oldest=Min("queued_at", filter=unfinished),
        failed=Count("pk", filter=recent_failure),
    )
    oldest = totals["oldest"]
    return {
        "pending": totals["pending"],
        "oldest_pending_age_seconds": (
            None if oldest is None else round(max((now - oldest).total_seconds(), 0.0), 3)
        ),
        "failed_last_24h": totals["failed"],
    }


@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """200 with queue figures while the database answers, 503 when it does not."""
    if request.method not in ("GET", "HEAD"):
        response = JsonResponse({"status": "error", "method": "Use GET."}, status=405)
        response["Allow"] = "GET, HEAD"
        return response
    try:
        queue = delivery_queue_health(now=timezone.now())
    except DatabaseError as error:
        # The reason shown is the error's kind only: this page is public, and a driver's
        # message can name hosts and users.
        logger.error("health.database_unreachable error=%s", error)
        return JsonResponse(
            {"status": "error", "database": f"unreachable ({type(error).__name__})"}, status=503
        )
    return JsonResponse({"status": "ok", "database": "ok", **queue})
