"""Set-up as a new user meets it: the generated .env, the first admin, and `make run` serving."""

import os

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command

from project import envfile
from tests.support.make_run import free_port, running_make_run


def test_env_file_is_generated_once_and_never_overwritten(tmp_path, monkeypatch):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("FIELD_ENCRYPTION_KEYS", raising=False)
    path = tmp_path / ".env"
    envfile.main(path)
    first = path.read_text()
    assert "SECRET_KEY=" in first
    assert "FIELD_ENCRYPTION_KEYS=" in first
    assert oct(path.stat().st_mode & 0o777) == "0o600"

    envfile.main(path)
    assert path.read_text() == first

    # A file an operator wrote keeps every line; only a missing secret is added.
    path.write_text("FIELD_ENCRYPTION_KEYS=mine\nDEBUG=True")
    envfile.main(path)
    text = path.read_text()
    assert text.startswith("FIELD_ENCRYPTION_KEYS=mine\nDEBUG=True\n")
    assert text.count("FIELD_ENCRYPTION_KEYS=") == 1
    assert "SECRET_KEY=" in text


def test_first_admin_is_created_once_with_a_printed_password(db, capsys):
    call_command("create_first_admin")
    out = capsys.readouterr().out
    assert "username: admin" in out
    password = out.split("password: ")[1].split()[0]
    assert get_user_model().objects.get(username="admin").check_password(password)

    call_command("create_first_admin")
    assert capsys.readouterr().out == ""
    assert get_user_model().objects.count() == 1


@pytest.mark.slow
def test_make_run_serves_the_admin_login_page(tmp_path):
    port = free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DJANGO_SETTINGS_MODULE", "DATABASE_URL"}
    }
    env.update(
        ENV_FILE=str(tmp_path / ".env"),
        DATA_DIR=str(tmp_path / "data"),
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_WORKERS="1",
    )
    login = f"http://127.0.0.1:{port}/admin/login/"
    with running_make_run(env, login) as stopped:
        answer = requests.get(login, timeout=10)
        assert answer.status_code == 200
        assert "Detection Destinations" in answer.text and "Log in" in answer.text
        assert (tmp_path / "data" / "db.sqlite3").exists()
    assert "username: admin" in stopped.output
    assert "password: " in stopped.output
