"""ninja's `export_openapi_schema`, kept: ninja is not an app (project/settings.py), so its own
commands are not found; this module hands the name to that same command."""

from ninja.management.commands.export_openapi_schema import Command  # noqa: F401
