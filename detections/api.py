"""The HTTP door for detection-run outcomes: authenticate, bound the body, call the service."""

from django.http import HttpRequest, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt

from .intake import MAX_BODY_BYTES, InvalidRunBody, parse_body
from .services import DetectionNotFound, record_detection_run
from .tokens import authenticate_token


@csrf_exempt  # called by machines with a bearer token, never by a browser session
def detection_runs(request: HttpRequest) -> JsonResponse:
    """POST /api/v1/detection-runs: record one run outcome and queue its pages."""
    if request.method != "POST":
        response = _errors(405, method=f"{request.method} is not allowed; use POST.")
        response["Allow"] = "POST"
        return response
    # The token is checked before the body is read, so strangers cannot make us read a megabyte.
    challenge = _refused_authorization(request)
    if challenge is not None:
        return challenge
    too_large = _errors(413, body=f"The body is over {MAX_BODY_BYTES} bytes; send less.")
    if _declared_length(request) > MAX_BODY_BYTES:
        return too_large
    try:
        # Read directly rather than through request.body, whose own limit
        # (DATA_UPLOAD_MAX_MEMORY_SIZE) would answer 400 instead of 413.
        raw = request.read(MAX_BODY_BYTES + 1)
    except UnreadablePostError:
        return _errors(400, body="The body could not be read completely.")
    if len(raw) > MAX_BODY_BYTES:
        return too_large
    try:
        recorded = record_detection_run(data=parse_body(raw))
    except InvalidRunBody as error:
        return JsonResponse({"errors": error.errors}, status=400)
    except DetectionNotFound as error:
        return JsonResponse({"errors": error.errors}, status=404)
    return JsonResponse(recorded.as_response(), status=201 if recorded.created else 200)


def _refused_authorization(request: HttpRequest) -> JsonResponse | None:
    """A 401 answer unless the request carries a known bearer token."""
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.strip().partition(" ")
    if not header:
        problem, challenge = "Send Authorization: Bearer <token>.", 'Bearer realm="api"'
    elif scheme.lower() != "bearer" or not credentials.strip():
        problem = "The Authorization header must read Bearer <token>."
        challenge = 'Bearer realm="api", error="invalid_request"'
    elif authenticate_token(credentials.strip()) is None:
        problem = "The token is not known; create one with manage.py create_api_token NAME."
        challenge = 'Bearer realm="api", error="invalid_token"'
    else:
        return None
    response = _errors(401, authorization=problem)
    response["WWW-Authenticate"] = challenge
    return response


def _declared_length(request: HttpRequest) -> int:
    """The Content-Length the client declared, 0 when it declared none or nonsense."""
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


def _errors(status: int, **messages: str) -> JsonResponse:
    return JsonResponse(
        {"errors": {field: [message] for field, message in messages.items()}}, status=status
    )
