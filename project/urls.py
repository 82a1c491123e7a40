from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from project import healthz


def no_favicon(request):
    """Answer browsers' favicon request without a 404 in the log."""
    return HttpResponse(status=204)


urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("detections.urls")),
    path("healthz", healthz.healthz, name="healthz"),
    path("favicon.ico", no_favicon),
]
