"""Set-up as a new user meets it: the generated .env, the first admin, and `make run` serving."""

import os

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command

from bench.sites import PYTHON, Site
from project import envfile
from project.file_modes import secure_sqlite_files
from tests.support.make_run import free_port, running_make_run


def owner_only_modes(data_dir) -> dict[str, str]:
    """The modes of the data folder and of its database files, by name."""
    modes = {"data": oct(data_dir.stat().st_mode & 0o777)}
    for path in data_dir.glob("db.sqlite3*"):
        modes[path.name] = oct(path.stat().st_mode & 0o777)
    return modes


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


def test_an_env_file_that_cannot_be_written_is_named_in_a_sentence(tmp_path, capsys):
    assert envfile.main(tmp_path / "missing" / ".env") == 1
    captured = capsys.readouterr()
    assert captured.err == (
        f"Cannot write {tmp_path / 'missing' / '.env'}: No such file or directory. "
        "Create its folder or set ENV_FILE.\n"
    )
    assert captured.out == ""


def test_an_env_file_that_cannot_be_read_is_named_in_a_sentence(tmp_path, capsys):
    folder = tmp_path / "a-folder-not-a-file"
    folder.mkdir()
    assert envfile.main(folder) == 1
    captured = capsys.readouterr()
    assert captured.err == f"Cannot read {folder}: Is a directory.\n"
    assert captured.out == ""


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
        # Readable by their owner only: the folder, the database and its write-ahead journals
        # (which exist only while a process has the database open).
        modes = owner_only_modes(tmp_path / "data")
        assert modes.pop("data") == "0o700"
        assert modes.pop("db.sqlite3") == "0o600"
        assert set(modes) <= {"db.sqlite3-shm", "db.sqlite3-wal"}
        assert set(modes.values()) <= {"0o600"}
    assert "username: admin" in stopped.output
    assert "password: " in stopped.output


@pytest.mark.slow
def test_loose_modes_left_by_an_earlier_release_are_tightened_by_the_set_up(tmp_path):
    # What an earlier release left under the usual umask: a world-readable folder and files.
    site = Site.create(tmp_path / "data", events_url="http://127.0.0.1:9/")
    site.manage("migrate", "--noinput", "-v", "0")
    data = tmp_path / "data"
    data.chmod(0o755)
    (data / "db.sqlite3").chmod(0o644)

    # make run's first step that opens the database.
    site.manage("migrate", "--noinput", "--skip-checks", "-v", "0")

    # The journals were tightened too, then removed by SQLite as the last connection closed.
    assert owner_only_modes(data) == {"data": "0o700", "db.sqlite3": "0o600"}
    # And a fresh site is created so: a process that only reads the settings makes them.
    fresh = Site.create(tmp_path / "fresh", events_url="http://127.0.0.1:9/")
    (tmp_path / "fresh").rmdir()
    fresh.run(PYTHON, "-c", "import django; django.setup()")
    assert owner_only_modes(tmp_path / "fresh") == {"data": "0o700", "db.sqlite3": "0o600"}


def test_an_open_databases_journals_are_tightened_with_it(tmp_path):
    folder = tmp_path / "elsewhere"
    folder.mkdir(mode=0o755)
    database = folder / "db.sqlite3"
    for path in (database, folder / "db.sqlite3-wal", folder / "db.sqlite3-shm"):
        path.touch()
        path.chmod(0o644)

    secure_sqlite_files(database)

    assert owner_only_modes(folder) == {
        "data": "0o755",  # a folder other than DATA_DIR is never changed
        "db.sqlite3": "0o600",
        "db.sqlite3-shm": "0o600",
        "db.sqlite3-wal": "0o600",
    }
