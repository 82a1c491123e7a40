"""How the app plugs into Django: its app config, and the admin site the project runs."""

from django.apps import AppConfig
from django.contrib import admin
from django.contrib.admin import apps as admin_apps
from django.contrib.admin import checks as admin_checks
from django.core import checks
from django.urls import path

from project import PRODUCT_NAME


class DestinationsConfig(AppConfig):
    name = "destinations"
    verbose_name = "PagerDuty destinations"

    def ready(self) -> None:
        from django.db.backends.signals import connection_created

        from project.file_modes import tighten_on_connect

        from . import checks  # noqa: F401  registers the system checks

        # Every process opens the database (make run's migrate, the web server, the worker), so
        # an SQLite file or journal left readable by others is tightened on first use.
        connection_created.connect(tighten_on_connect, dispatch_uid="tighten_sqlite_file_modes")


class DestinationsAdminConfig(admin_apps.SimpleAdminConfig):
    """Django's admin app, running DestinationsAdminSite (INSTALLED_APPS names it in its place).

    Its model admins are loaded where they are used, not in every process: Django's AdminConfig
    imports every app's admin module at django.setup() (autodiscover), which cost each process
    0.26 s (the admin modules import the services, actions and forms behind them), the worker's
    included, which shows no admin page. This is the SimpleAdminConfig Django documents for
    that, with admin.autodiscover() called by the URLconf (project/urls.py), so every request,
    and anything that reverses a URL, finds them registered; and by the admin's system check
    below, so `manage.py check` checks them whichever check runs first. Code that reads the
    admin's registry outside those calls admin.autodiscover() first.
    """

    default_site = "destinations.apps.DestinationsAdminSite"
    # Not the default config of this module's app: that is DestinationsConfig.
    default = False

    def ready(self) -> None:
        # SimpleAdminConfig.ready registers these two; the second loads the admins first here.
        checks.register(admin_checks.check_dependencies, checks.Tags.admin)
        checks.register(check_admin_app, checks.Tags.admin)


def check_admin_app(app_configs=None, **kwargs):
    """Django's check of every admin site's model admins, once they are all registered."""
    admin.autodiscover()
    return admin_checks.check_admin_app(app_configs, **kwargs)


class DestinationsAdminSite(admin.AdminSite):
    """The admin with the product's titles, a "Delivery health" box on its index, and that page."""

    site_header = PRODUCT_NAME
    site_title = PRODUCT_NAME
    index_title = "PagerDuty destinations, detections and deliveries"
    # No "View site" link: there is no site besides this admin and the API (it opened a 404).
    site_url = None
    # The index gains a "Delivery health" box (see the template for why it is set here).
    index_template = "admin/destinations/index.html"

    def has_permission(self, request):
        # With ADMIN_MFA_REQUIRED, staff who gave only a password are not staff yet: every admin
        # view (admin_view) refuses them, as django-otp's OTPAdminSite does (is_verified()).
        from .admin.signin import needs_second_factor

        return super().has_permission(request) and not needs_second_factor(request)

    def login(self, request, extra_context=None):
        # After the password, the second factor: enrolment, or the app's code.
        from .admin.signin import after_password

        return after_password(request, super().login(request, extra_context))

    def get_urls(self):
        # Imported when the URLs are first read: the page reads models, which are not yet loaded
        # when INSTALLED_APPS imports this module.
        from .admin import signin
        from .admin.health_page import health_view

        return [
            # Before the admin's own, whose app_label catch-all would answer it; admin_view lets
            # only staff in.
            path(
                "destinations/health/",
                self.admin_view(health_view),
                name="destinations_health",
            ),
            # The second-factor pages, open to a user who has given only the password.
            *signin.urls(),
            *super().get_urls(),
        ]
