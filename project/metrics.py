"""GET /metrics: the product's figures in Prometheus' text format, behind METRICS_TOKEN if set."""

import hmac
import logging

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from prometheus_client.exposition import choose_encoder

from destinations.metrics import metrics_registry
from detections.tokens import hash_token

logger = logging.getLogger("project.metrics")

REGISTRY = metrics_registry()

# Messages, not secrets (hence the noqa).
MISSING_TOKEN = (
    "GET /metrics needs the token set in METRICS_TOKEN: send 'Authorization: Bearer …'.\n"  # noqa: S105
)
WRONG_TOKEN = "The bearer token sent is not the one set in METRICS_TOKEN.\n"  # noqa: S105


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """200 with every metric; 401 without the right token; 503 when the database does not answer."""
    if request.method not in ("GET", "HEAD"):
        response = _text("Use GET.\n", status=405)
        response["Allow"] = "GET, HEAD"
        return response
    refusal = _refusal(request)
    if refusal:
        response = _text(refusal, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    try:
        body = encode(REGISTRY)
    except DatabaseError as error:
        # The error's kind only, as /healthz: a driver's message can name hosts and users.
        logger.error("metrics.database_unreachable error=%s", type(error).__name__)
        return _text(f"The database is unreachable ({type(error).__name__}).\n", status=503)
    return HttpResponse(body, content_type=content_type)


def _refusal(request: HttpRequest) -> str:
    """Why the request may not read the metrics, or "" when it may (or no token is set)."""
    expected = settings.METRICS_TOKEN
    if not expected:
        return ""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return MISSING_TOKEN
    # Compared as hashes in constant time, as the API's tokens (detections/tokens.py): the time
    # taken says nothing about how much of the token was right. Neither is ever logged.
    if not hmac.compare_digest(hash_token(given.strip()), hash_token(expected)):
        return WRONG_TOKEN
    return ""


def _text(text: str, *, status: int) -> HttpResponse:
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")
