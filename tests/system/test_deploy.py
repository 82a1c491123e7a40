"""`manage.py check --deploy` is clean under the production settings the README documents."""

# Each run is a fresh process with a clean environment (no `.env`, nothing from the test
# settings), as a production host would start it; warnings count as failures.

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]

# A second or more per process: `make test-fast` leaves these out.
pytestmark = pytest.mark.slow

# The production environment of the README's "Production settings" table.
PRODUCTION_ENV = {
    "DEBUG": "False",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "alerts.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://alerts.example.com",
    "FIELD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "BEHIND_TLS_PROXY": "True",
    "SECURE_HSTS_PRELOAD": "True",
    "ADMIN_MFA_REQUIRED": "True",
}


def check_deploy(data_dir: Path, **overrides: str | None) -> subprocess.CompletedProcess:
    """Run `check --deploy --fail-level WARNING` with the production environment, changed."""
    environment = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(data_dir),
        "ENV_FILE": "",  # no .env: only what is set here
        "DJANGO_SETTINGS_MODULE": "project.settings",
        "DATA_DIR": str(data_dir),
        **PRODUCTION_ENV,
        **overrides,
    }
    return subprocess.run(
        [
            sys.executable,
            "manage.py",
            "check",
            "--deploy",
            "--database",
            "default",
            "--fail-level",
            "WARNING",
        ],
        cwd=ROOT,
        env={name: value for name, value in environment.items() if value is not None},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_deploy_reports_no_issues_with_the_production_settings(tmp_path):
    result = check_deploy(tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout


@pytest.mark.parametrize(
    ("weakened", "reported"),
    [
        (
            {
                "DEBUG": "True",
                "SECRET_KEY": "short",
                "SECURE_SSL_REDIRECT": "False",
                "SESSION_COOKIE_SECURE": "False",
                "CSRF_COOKIE_SECURE": "False",
                "SECURE_HSTS_SECONDS": "0",
            },
            ["W018", "W009", "W008", "W012", "W016", "W004"],
        ),
        ({"SECURE_HSTS_PRELOAD": None}, ["W021"]),
        ({"FIELD_ENCRYPTION_KEYS": "not-a-fernet-key"}, ["E001"]),
        ({"ADMIN_MFA_REQUIRED": None}, ["project.W010"]),
    ],
    ids=["debug-and-no-https", "no-hsts-preload", "bad-encryption-key", "no-admin-mfa"],
)
def test_check_deploy_names_each_weakened_setting(tmp_path, weakened, reported):
    # Proves the clean run above is earned by the settings, not by a check that says nothing.
    result = check_deploy(tmp_path, **weakened)

    assert result.returncode != 0
    for check_id in reported:
        assert f"{check_id})" in result.stdout + result.stderr
