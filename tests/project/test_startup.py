"""What a process loads at start: the worker neither the admin nor the API, checks still all."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Run in a new process, where nothing is imported yet: the worker's start (django.setup(), its
# command, the checks it runs), then the admin's system check.
PROBE = """
import json, sys
import django

django.setup()
from django.core.checks import run_checks
from django.core.management import load_command_class

command = load_command_class("destinations", "deliver_alerts")
run_checks(tags=command.requires_system_checks)
worker = sorted(
    name
    for name in ("ninja", "pydantic", "prometheus_client", "destinations.admin", "detections.admin")
    if name in sys.modules
)
run_checks(tags=["admin"])
from django.contrib import admin

checked = sorted(model._meta.label for model in admin.site._registry)
print(json.dumps({"worker": worker, "checked": checked}))
"""


def probe(code: str = PROBE):
    """What `code`, run in a new process on the test settings, printed last (as JSON)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_worker_starts_without_the_admin_the_api_or_the_metrics_client_and_checks_see_all():
    found = probe()

    # Each of them cost every worker's start (and `deliver_alerts --once`) tens to hundreds of ms.
    assert found["worker"] == []
    # The admin's system check loads the model admins itself, whichever check runs first.
    assert {"destinations.Destination", "destinations.Delivery", "detections.Detection"} <= set(
        found["checked"]
    )


WEB_PROBE = """
import json, sys
import project.wsgi

loaded = [name for name in ("project.urls", "detections.api") if name in sys.modules]
print(json.dumps(sorted(loaded)))
"""


def test_a_web_worker_loads_the_urlconf_as_it_boots_not_on_its_first_request():
    # gunicorn imports project.wsgi as a worker boots; the first request then took 0.38 s more.
    assert probe(WEB_PROBE) == ["detections.api", "project.urls"]
