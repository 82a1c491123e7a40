"""The HTTP door for detection-run outcomes: authenticate, bound the body, call the service.

The API is described by its OpenAPI 3 document (/api/v1/openapi.json) and docs (/api/v1/docs),
built from the same schema that validates the body (intake.RunBody).
"""

import functools
import logging
import uuid
from typing import Literal

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse, UnreadablePostError
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI, Schema
from ninja.openapi.docs import ABS_TPL_PATH, Swagger
from ninja.openapi.schema import REF_TEMPLATE
from ninja.security.http import HttpAuthBase
from pydantic import Field

from destinations.models import DeliveryStatus

from .intake import MAX_BODY_BYTES, InvalidRunBody, RunBody, parse_body
from .models import Outcome, TokenScope
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


# The answers, as the OpenAPI document describes them.


class DeliveryAnswer(Schema):
    id: int
    destination: str = Field(description="The destination's name.")
    status: Literal[*DeliveryStatus.values]


class RunAnswer(Schema):
    """The recorded run and the pages it queued."""

    run_id: str
    detection_id: uuid.UUID
    detection_name: str
    outcome: Literal[*Outcome.values]
    deliveries: list[DeliveryAnswer] = Field(
        description="One per enabled destination for a MATCHED or ERROR run, else none."
    )
    warning: str | None = Field(
        None,
        description="On a repeat (200) whose values differ from the stored run's: which ones.",
    )


class Refusal(Schema):
    """Each refused field (or "body", "detection", "authorization", …) and its messages."""

    errors: dict[str, list[str]] = Field(
        examples=[{"match_count": ["It must be 0 or more; got -1."]}]
    )


# The run body's name among the document's schemas.
RUN_BODY_SCHEMA = RunBody.model_config["title"]


class DetectionRunsAPI(NinjaAPI):
    """The API, whose document also holds the run body's schema.

    The body is read and validated by hand (strict JSON, 413 past 1 MB, chunked bodies, the
    token checked before any of it is read), so it is not a ninja body parameter: its schema is
    added to the document here, and the operation refers to it.
    """

    def get_openapi_schema(self, **kwargs):
        schema = super().get_openapi_schema(**kwargs)
        body = RunBody.model_json_schema(ref_template=REF_TEMPLATE)
        schema.add_schema_definitions({**body.pop("$defs", {}), RUN_BODY_SCHEMA: body})
        return schema


class DocsPage(Swagger):
    """ninja's Swagger UI page, loading the copy of Swagger UI this site serves (/static/ninja/).

    ninja renders that page only when the string "ninja" is in INSTALLED_APPS; otherwise it
    renders `template_cdn`, a page loading Swagger UI from a CDN, which SECURE_CSP refuses and a
    site without Internet access cannot reach. ninja is not an app here (project/settings.py
    says why, and where its templates and files are found instead), so that fallback is pointed
    at ninja's own page.
    """

    template_cdn = str(ABS_TPL_PATH / "swagger.html")


api = DetectionRunsAPI(
    title="Detection Destinations API",
    version="1",
    description=(
        "Detection engines report each run's outcome here; a MATCHED or ERROR run pages the "
        "detection's PagerDuty destinations. Send `Authorization: Bearer <token>` (tokens come "
        "from `manage.py create_api_token NAME`). A refused request stores nothing."
    ),
    urls_namespace="api-v1",
    docs=DocsPage(),
)


class CredentialsRefused(Exception):
    """The request's credentials were refused; `response` is the answer to send."""

    def __init__(self, response: JsonResponse):
        self.response = response
        super().__init__(f"credentials refused ({response.status_code})")


class BearerToken(HttpAuthBase):
    """A runs token from create_api_token, checked (by refused_authorization) before the body."""

    openapi_scheme = "bearer"
    openapi_description = "A token from manage.py create_api_token NAME, shown once."

    def __call__(self, request: HttpRequest) -> bool:
        refusal = refused_authorization(request, scope=TokenScope.RUNS)
        if refusal is not None:
            raise CredentialsRefused(refusal)
        return True


@api.exception_handler(CredentialsRefused)
def _credentials_refused(request: HttpRequest, error: CredentialsRefused) -> HttpResponse:
    return error.response


def _database_unreachable(request: HttpRequest, error: Exception) -> HttpResponse:
    return database_unreachable(error)


def database_unreachable(error: Exception) -> JsonResponse:
    """The 503 answer, with Retry-After, when the database cannot be reached."""
    # Only the kind is logged: a driver's message can name hosts and users.
    logger.error("api.database_unreachable error=%s", type(error).__name__)
    response = error_response(503, database=DATABASE_UNREACHABLE)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def _not_ours_to_answer(request: HttpRequest, error: Exception) -> HttpResponse:
    # Anything else is a bug: Django answers its 500 (and logs it), as for any other view.
    raise error


for _kind in UNREACHABLE_ERRORS:
    api.add_exception_handler(_kind, _database_unreachable)
api.add_exception_handler(Exception, _not_ours_to_answer)


def _answer(description: str, **headers: str) -> dict:
    answer: dict = {"description": description}
    if headers:
        answer["headers"] = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return answer


@api.post(
    "/detection-runs",
    auth=BearerToken(),
    url_name="detection-runs",
    operation_id="record_detection_run",
    summary="Record a detection run",
    description=(
        "Records one run's outcome and queues its pages in one transaction. The outcome is "
        "computed: errors present → ERROR; else the detection's condition holds → MATCHED; else "
        "NOT_MATCHED. A trailing slash is accepted too; other methods get 405."
    ),
    response={
        201: RunAnswer,
        200: RunAnswer,
        400: Refusal,
        401: Refusal,
        403: Refusal,
        404: Refusal,
        411: Refusal,
        413: Refusal,
        503: Refusal,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=RUN_BODY_SCHEMA)}}
            },
        },
        "responses": {
            201: _answer("Recorded; its pages are queued."),
            200: _answer("This run_id was recorded before: the stored run; nothing new."),
            400: _answer(
                "Refused, nothing stored: the JSON itself (under body: not UTF-8, not an "
                "object, NaN or Infinity, a repeated key, an integer over 100 digits) or each "
                "refused field by name; unknown fields are named, with the known one they resemble."
            ),
            401: _answer(
                "No known bearer token (checked before the body is read).",
                **{"WWW-Authenticate": 'Bearer realm="api", with the error when one was sent.'},
            ),
            403: _answer("The token may not record runs."),
            404: _answer("No such detection (checked once the body is valid)."),
            411: _answer("A chunked body this server cannot tell the end of; send Content-Length."),
            413: _answer(f"The body is over {MAX_BODY_BYTES} bytes."),
            503: _answer(
                "The database is unreachable; nothing was stored. Post the same body again.",
                **{"Retry-After": "Seconds to wait before posting again."},
            ),
        },
    },
)
def record_run(request: HttpRequest) -> JsonResponse:
    """Read and record; authentication is done, database errors go to the handlers above."""
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


@csrf_exempt  # called by machines with a bearer token, never by a browser session
def detection_runs(request: HttpRequest) -> HttpResponse:
    """POST /api/v1/detection-runs (with or without the trailing slash): the operation above."""
    if request.method != "POST":
        response = error_response(405, method=f"{request.method} is not allowed; use POST.")
        response["Allow"] = "POST"
        return response
    return _operation_view()(request)


@functools.cache
def _operation_view():
    """The API's own view of the operation: authentication, handlers, then record_run."""
    patterns, _, _ = api.urls
    return next(p.callback for p in patterns if getattr(p, "name", "") == "detection-runs")


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
        # Who made the request's changes, for the audit trail.
        request.api_token = token
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
