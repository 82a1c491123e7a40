"""The HTTP door for configuration as code: GET exports, POST applies (config tokens only)."""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from destinations.audit.attribution import acting, api_via
from destinations.configuration import API_SOURCE
from destinations.configuration.apply import apply_config
from destinations.configuration.document import CONFIG_MAX_BYTES, ConfigRefused, parse_json
from destinations.configuration.export import export_config

from .api import (
    UNREACHABLE_ERRORS,
    database_unreachable,
    error_response,
    read_body,
    refused_authorization,
)
from .models import TokenScope

_YES = ("1", "true", "yes")


@csrf_exempt  # called by machines with a bearer token, never by a browser session
def config(request: HttpRequest) -> JsonResponse:
    """GET /api/v1/config: the export; POST: apply the same format (?dry_run=1 plans only)."""
    if request.method not in ("GET", "POST"):
        response = error_response(405, method=f"{request.method} is not allowed; use GET or POST.")
        response["Allow"] = "GET, POST"
        return response
    try:
        challenge = refused_authorization(request, scope=TokenScope.CONFIG)
        if challenge is not None:
            return challenge
        if request.method == "GET":
            return JsonResponse(export_config())
        return _apply(request)
    except UNREACHABLE_ERRORS as error:
        return database_unreachable(error)


def _apply(request: HttpRequest) -> JsonResponse:
    raw = read_body(request, limit=CONFIG_MAX_BYTES)
    if isinstance(raw, JsonResponse):
        return raw
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return error_response(400, body="The body must be JSON in UTF-8.")
    try:
        with acting(via=api_via(request.api_token.name)):
            plan = apply_config(
                data=parse_json(text),
                managed_by=API_SOURCE,
                dry_run=request.GET.get("dry_run", "").lower() in _YES,
                prune=request.GET.get("prune", "").lower() in _YES,
                # A config token is not a shell on the server: it may not have server files
                # read.
                key_files=False,
            )
    except ConfigRefused as refusal:
        return JsonResponse({"errors": refusal.by_path(whole="body")}, status=400)
    return JsonResponse(plan.as_json())
