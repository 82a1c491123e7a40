from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from detections.api import api as detections_api
from project import healthz, metrics

# The model admins are registered here, where the admin's URLs are built from them, rather than at
# django.setup() in every process (destinations/apps.py, DestinationsAdminConfig, says why).
admin.autodiscover()


def no_favicon(request):
    """Answer browsers' favicon request without a 404 in the log."""
    return HttpResponse(status=204)


urlpatterns = [
    path("admin/", admin.site.urls),
    # Plain views first (detection-runs with its 405 and trailing slash, and any other view under
    # /api/v1/), then the API's own: openapi.json and docs; a path neither knows is a 404.
    path("api/v1/", include("detections.urls")),
    path("api/v1/", detections_api.urls),
    path("healthz", healthz.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("favicon.ico", no_favicon),
]
