"""Configuration as code: destinations and detections kept in a file and applied from it.

options.py (the file's vocabulary), document.py (reading a file), export.py (writing one),
plan.py (what an apply changes), apply.py (making the database match, in one transaction).
"""

# Shown on the admin's change page of a record that a file manages.
API_SOURCE = "API"
STDIN_SOURCE = "stdin"


def managed_notice(managed_by: str) -> str:
    """The sentence the admin shows on a record a configuration file manages."""
    if managed_by == API_SOURCE:
        return (
            "Managed through the configuration API (POST /api/v1/config): change it in the "
            "configuration that is posted there. Test alerts still work."
        )
    return f"Managed by {managed_by}: change it there and run apply_config. Test alerts still work."
