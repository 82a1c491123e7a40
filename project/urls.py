from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path

from destinations.admin.health_page import health_view
from project import PRODUCT_NAME, healthz

admin.site.site_header = PRODUCT_NAME
admin.site.site_title = PRODUCT_NAME
admin.site.index_title = "PagerDuty destinations, detections and deliveries"
# The index gains a "Delivery health" box (see the template for why it is set here).
admin.site.index_template = "admin/destinations/index.html"


def no_favicon(request):
    """Answer browsers' favicon request without a 404 in the log."""
    return HttpResponse(status=204)


urlpatterns = [
    # Before "admin/", whose catch-all would answer it; admin_view lets only staff in.
    path(
        "admin/destinations/health/",
        admin.site.admin_view(health_view),
        name="destinations_health",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("detections.urls")),
    path("healthz", healthz.healthz, name="healthz"),
    path("favicon.ico", no_favicon),
]
