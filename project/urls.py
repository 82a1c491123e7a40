from django.contrib import admin
from django.urls import include, path

from destinations.health_views import health_view
from project import health

# The index gains a "Delivery health" box (see the template for why it is set here).
admin.site.index_template = "admin/destinations/index.html"

urlpatterns = [
    # Before "admin/", whose catch-all would answer it; admin_view lets only staff in.
    path(
        "admin/destinations/health/",
        admin.site.admin_view(health_view),
        name="destinations_health",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/", include("detections.urls")),
    path("healthz", health.healthz, name="healthz"),
]
