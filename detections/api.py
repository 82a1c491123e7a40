"""The HTTP door for detection-run outcomes: authenticate, bound the body, call the service."""

import logging

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from .intake import MAX_BODY_BYTES, InvalidRunBody, parse_body
from .models import TokenScope
from .services import DetectionNotFound, record_detection_run
from .tokens import authenticate_token

logger = logging.getLogger("detections.api")

# How long an engine is asked to wait before posting again while the database is unreachable:
# long enough for a restart to make progress, short enough that a page is late by seconds.
DATABASE_RETRY_AFTER_SECONDS = 5
DATABASE_UNREACHABLE = "The database is unreachable; nothing was stored. Retry later."
# Errors that say the database could not be reached or the connection broke, not that the
# request was wrong: integrity and data errors are not among them and still surface as bugs.
UNREACHABLE_ERRORS = (OperationalError, InterfaceError)
# Each read asks the server for this much at most, so a slow stream is read piece by piece.
_READ_SIZE = 64 * 1024


@csrf_exempt  # called by machines with a bearer token, never by a browser session
def detection_runs(request: HttpRequest) -> JsonResponse:
    """POST /api/v1/detection-runs: record one run outcome and queue its pages."""
    if request.method != "POST":
        response = error_response(405, method=f"{request.method} is not allowed; use POST.")
        response["Allow"] = "POST"
        return response
    try:
        return _record(request)
    except UNREACHABLE_ERRORS as error:
        return database_unreachable(error)


def database_unreachable(error: Exception) -> JsonResponse:
    """The 503 answer, with Retry-After, when the database cannot be reached."""
    # Only the kind is logged: a driver's message can name hosts and users.
    logger.error("api.database_unreachable error=%s", type(error).__name__)
    response = error_response(503, database=DATABASE_UNREACHABLE)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def _record(request: HttpRequest) -> JsonResponse:
    """Authenticate, read and record; database errors are left to the caller."""
    # The token is checked before the body is read, so strangers cannot make us read a megabyte.
    challenge = refused_authorization(request, scope=TokenScope.RUNS)
    if challenge is not None:
        return challenge
    raw = read_body(request)
    if isinstance(raw, JsonResponse):
        return raw
    try:
        # One transaction inside: when the database fails midway, nothing of the run is kept.
        recorded = record_detection_run(data=parse_body(raw))
    except InvalidRunBody as error:
        return JsonResponse({"errors": error.errors}, status=400)
    except DetectionNotFound as error:
        return JsonResponse({"errors": error.errors}, status=404)
    return JsonResponse(recorded.as_response(), status=201 if recorded.created else 200)


def read_body(request: HttpRequest, *, limit: int = MAX_BODY_BYTES) -> bytes | JsonResponse:
    """The body's bytes, or the answer refusing it (413 past `limit`)."""
    too_large = error_response(413, body=f"The body is over {limit} bytes; send less.")
    if _is_chunked(request):
        # Django reads only as far as Content-Length, which a chunked body has none of, so it
        # would read nothing; the server's own stream ends where the chunks do, when the server
        # says so (wsgi.input_terminated). Otherwise it would be read into the next request.
        if not request.environ.get("wsgi.input_terminated"):
            return error_response(
                411, body="This server cannot read chunked bodies; send a Content-Length."
            )
        stream = request.environ["wsgi.input"]
    elif _declared_length(request) > limit:
        return too_large
    else:
        # Read directly rather than through request.body, whose own limit
        # (DATA_UPLOAD_MAX_MEMORY_SIZE) would answer 400 instead of 413.
        stream = request
    try:
        raw = _read_at_most(stream, limit + 1)
    except UnreadablePostError:
        return error_response(400, body="The body could not be read completely.")
    if len(raw) > limit:
        return too_large
    return raw


def _read_at_most(stream, limit: int) -> bytes:
    """Read until the stream ends or `limit` bytes have arrived, whichever is first."""
    parts: list[bytes] = []
    received = 0
    while received < limit:
        try:
            part = stream.read(min(_READ_SIZE, limit - received))
        except UnreadablePostError:
            raise
        except Exception as error:
            # A server's own stream raises its own errors (a broken chunk, a client gone); each
            # means the same to the engine: the body did not arrive whole.
            raise UnreadablePostError(str(error)) from error
        if not part:
            break
        parts.append(part)
        received += len(part)
    return b"".join(parts)


def _is_chunked(request: HttpRequest) -> bool:
    """Whether the body is sent in chunks (the last transfer coding is chunked)."""
    codings = request.META.get("HTTP_TRANSFER_ENCODING", "")
    return codings.rsplit(",", 1)[-1].strip().lower() == "chunked"


def refused_authorization(request: HttpRequest, *, scope: str) -> JsonResponse | None:
    """A 401 answer unless the request carries a known bearer token, 403 if of another scope."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if not header:
        problem, challenge = "Send Authorization: Bearer <token>.", 'Bearer realm="api"'
    elif scheme.lower() != "bearer" or not credentials.strip():
        problem = "The Authorization header must read Bearer <token>."
        challenge = 'Bearer realm="api", error="invalid_request"'
    elif (token := authenticate_token(credentials.strip())) is None:
        problem = "The token is not known; create one with manage.py create_api_token NAME."
        challenge = 'Bearer realm="api", error="invalid_token"'
    elif token.scope != scope:
        # Known, but for the other door: a runs token cannot change the configuration, and a
        # config token cannot page anyone.
        response = error_response(
            403,
            authorization=f"This token's scope is {token.scope}; this endpoint needs a {scope} "
            f"token: create one with manage.py create_api_token NAME --scope {scope}.",
        )
        response["WWW-Authenticate"] = (
            f'Bearer realm="api", error="insufficient_scope", scope="{scope}"'
        )
        return response
    else:
        return None
    response = error_response(401, authorization=problem)
    response["WWW-Authenticate"] = challenge
    return response


def _declared_length(request: HttpRequest) -> int:
    """The Content-Length the client declared, 0 when it declared none or nonsense."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def error_response(status: int, **messages: str) -> JsonResponse:
    return JsonResponse(
        {"errors": {field: [message] for field, message in messages.items()}}, status=status
    )
