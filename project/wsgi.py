"""WSGI entry point (gunicorn project.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
application = get_wsgi_application()
# The URLconf (the admin's model admins, the API and its schema library) is loaded as the web
# worker boots, not by its first request: that request took 0.38 s instead of 12 ms, and after a
# restart it is often the detection engine's page.
get_resolver().url_patterns  # noqa: B018 (read for its side effect: importing the URLconf)
