"""`make run` says where it serves and where events go; commands never echo a pasted key."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests
from django.core.management import ManagementUtility

from project.serve import admin_url, banner, in_use
from tests.support import worker_process
from tests.support.fake_pagerduty.server import FakePagerDuty
from tests.support.make_run import ROOT, free_port, running_make_run
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

US_URL = "https://events.pagerduty.com/v2/enqueue"
EU_URL = "https://events.eu.pagerduty.com/v2/enqueue"
# Names a developer's shell may hold that would change what these tests see.
UNSET = ("SITE_URL", "WEB_BIND", "LOG_LEVEL", "PAGERDUTY_EVENTS_URL")


def manage(*args: str, stdin: str = "", **env: str) -> subprocess.CompletedProcess:
    """Run manage.py as an operator does, on the product's settings."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if name not in UNSET and name != "DATABASE_URL"
    }
    environment.update(DJANGO_SETTINGS_MODULE="project.settings", **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_utility(capsys, *argv: str) -> tuple[int, str]:
    """Run a command through manage.py's own entry point; its exit code and all it printed."""
    with pytest.raises(SystemExit) as exit_:
        ManagementUtility(["manage.py", *argv]).execute()
    captured = capsys.readouterr()
    return exit_.value.code, captured.out + captured.err


# --- A key pasted on the command line --------------------------------------------------------


def test_a_key_pasted_after_the_destination_is_counted_not_shown():
    result = manage("rotate_routing_key", "SecOps on-call", OTHER_ROUTING_KEY)

    assert result.returncode == 2
    assert OTHER_ROUTING_KEY not in result.stdout + result.stderr
    assert "1 unexpected argument was given and is not shown" in result.stderr
    assert "standard input, a prompt or --from-file" in result.stderr


def test_several_unexpected_arguments_are_counted(capsys):
    code, printed = run_utility(capsys, "send_test_alert", "x", ROUTING_KEY, "more")

    assert code == 2
    assert ROUTING_KEY not in printed
    assert "2 unexpected arguments were given and are not shown" in printed


@pytest.mark.django_db
@pytest.mark.parametrize(
    "argv",
    [
        ["send_test_alert", ROUTING_KEY],
        ["rotate_routing_key", ROUTING_KEY],
        ["record_detection_run", ROUTING_KEY],
        ["deliver_alerts", "--concurrency", ROUTING_KEY],
        ["deliver_alerts", "--once", ROUTING_KEY],
        ["rotate_encryption_key", ROUTING_KEY],
        ["rotate_encryption_key", "--batch-size", ROUTING_KEY],
        ["create_api_token", "ci", ROUTING_KEY],
        ["create_first_admin", ROUTING_KEY],
    ],
    ids=lambda argv: " ".join(arg if arg != ROUTING_KEY else "KEY" for arg in argv),
)
def test_no_command_echoes_a_key_given_in_the_wrong_place(capsys, argv, destination):
    code, printed = run_utility(capsys, *argv)

    assert code != 0
    assert ROUTING_KEY not in printed
    assert "not shown" in printed


# --- What a successful command prints, and where ---------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_send_test_alert_prints_its_result_alone_and_links_to_the_web_bind(
    fake_pagerduty, destination
):
    result = manage(
        "send_test_alert",
        destination.name,
        DATABASE_URL=worker_process.test_database_url(),
        PAGERDUTY_EVENTS_URL=fake_pagerduty.url,
        WEB_BIND="127.0.0.1:8100",
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [result.stdout.strip()]
    assert result.stdout.startswith("Test alert to “SecOps on-call” accepted by PagerDuty (202)")
    # Info lines would repeat the result; warnings and errors would still show.
    assert result.stderr == ""
    (event,) = [received.json for received in fake_pagerduty.received]
    assert event["client_url"] == "http://127.0.0.1:8100/admin/"


@pytest.mark.django_db(transaction=True)
def test_verbosity_2_shows_the_log_lines_on_stderr_only(fake_pagerduty, destination):
    result = manage(
        "send_test_alert",
        destination.name,
        "-v",
        "2",
        DATABASE_URL=worker_process.test_database_url(),
        PAGERDUTY_EVENTS_URL=fake_pagerduty.url,
    )

    assert result.returncode == 0, result.stderr
    assert "delivery.attempt" in result.stderr
    assert "delivery.attempt" not in result.stdout
    assert len(result.stdout.strip().splitlines()) == 1


@pytest.mark.django_db(transaction=True)
def test_a_rotation_prints_its_result_and_keeps_its_audit_line_on_stderr(
    fake_pagerduty, destination
):
    result = manage(
        "rotate_routing_key",
        destination.name,
        stdin=OTHER_ROUTING_KEY + "\n",
        DATABASE_URL=worker_process.test_database_url(),
        PAGERDUTY_EVENTS_URL=fake_pagerduty.url,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Rotated the routing key of “SecOps on-call”")
    assert len(result.stdout.strip().splitlines()) == 1
    (audit,) = result.stderr.strip().splitlines()
    assert "INFO destinations.rotation routing_key.rotated" in audit
    assert OTHER_ROUTING_KEY not in result.stdout + result.stderr


# --- SITE_URL from WEB_BIND ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "url"),
    [
        ("127.0.0.1:8100", "http://127.0.0.1:8100/admin/"),
        ("0.0.0.0:9000", "http://127.0.0.1:9000/admin/"),
        ("[::]:8000", "http://[::1]:8000/admin/"),
        ("[2001:db8::5]:8443", "http://[2001:db8::5]:8443/admin/"),
        ("alerts.internal", "http://alerts.internal:8000/admin/"),
        ("unix:/run/detection-destinations.sock", None),
    ],
)
def test_the_admin_url_of_a_bind(bind, url):
    assert admin_url(bind) == url


def test_a_bind_where_something_listens_is_in_use_and_a_free_one_is_not():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert in_use(f"127.0.0.1:{port}")
        assert in_use(f"0.0.0.0:{port}")  # a wildcard bind would take that port too
    assert not in_use(f"127.0.0.1:{port}")
    assert not in_use("unix:/run/detection-destinations.sock")
    assert not in_use("127.0.0.1:http-alt")  # left to gunicorn, which names what is wrong


def site_url(tmp_path, env_file: str, **env: str) -> str:
    path = tmp_path / ".env"
    path.write_text(env_file)
    code = "from django.conf import settings; print(settings.SITE_URL)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={
            **{name: value for name, value in os.environ.items() if name not in UNSET},
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "ENV_FILE": str(path),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_site_url_follows_web_bind_from_env_file_unless_set(tmp_path):
    assert site_url(tmp_path, "") == "http://127.0.0.1:8000/admin/"
    assert site_url(tmp_path, "WEB_BIND=0.0.0.0:8200\n") == "http://127.0.0.1:8200/admin/"
    assert (
        site_url(tmp_path, "WEB_BIND=0.0.0.0:8200\n", SITE_URL="https://alerts.example.com/admin/")
        == "https://alerts.example.com/admin/"
    )


# --- The start-up banner ---------------------------------------------------------------------


def test_the_banner_names_the_bind_and_both_region_urls(settings, monkeypatch):
    settings.PAGERDUTY_EVENTS_URL = None
    settings.SITE_URL = "http://127.0.0.1:8100/admin/"
    monkeypatch.setenv("WEB_BIND", "127.0.0.1:8100")

    assert banner() == [
        "Serving http://127.0.0.1:8100/admin/ (Ctrl-C stops everything)",
        f"PagerDuty events go to each destination's region: {US_URL} (US) or {EU_URL} (EU)",
        "Events link back to http://127.0.0.1:8100/admin/ (SITE_URL)",
    ]


def test_the_banner_names_the_override_and_what_belongs_in_the_env_file(
    settings, monkeypatch, tmp_path
):
    env_file = tmp_path / ".env"
    env_file.write_text("WEB_BIND=127.0.0.1:8100\n")
    settings.ENV_FILE = str(env_file)
    settings.PAGERDUTY_EVENTS_URL = "http://proxy.internal:8080/v2/enqueue"
    monkeypatch.setenv("WEB_BIND", "127.0.0.1:8100")

    lines = banner(shell_names={"PAGERDUTY_EVENTS_URL", "WEB_BIND", "HOME"})

    assert (
        lines[1]
        == "PagerDuty events go to http://proxy.internal:8080/v2/enqueue (PAGERDUTY_EVENTS_URL)"
    )
    assert lines[-1] == (
        f"Note: PAGERDUTY_EVENTS_URL is set in this shell only; put it in {env_file} so "
        "manage.py commands run from another shell use the same."
    )


# --- make run, for real ----------------------------------------------------------------------


@pytest.mark.slow
def test_make_run_says_where_it_serves_links_events_there_and_stops_cleanly(tmp_path):
    # WEB_BIND only in the file: it must reach the web server and the worker's events alike.
    port, shared = make_run_site(tmp_path)
    with (
        FakePagerDuty() as fake,
        running_make_run(
            {**shared, "PAGERDUTY_EVENTS_URL": fake.url}, f"http://127.0.0.1:{port}/healthz"
        ) as stopped,
    ):
        # From another shell (without PAGERDUTY_EVENTS_URL): a matched run, which the
        # worker of `make run` delivers.
        other_shell = {**shared, "DJANGO_SETTINGS_MODULE": "project.settings"}
        setup = (
            "from tests.support.factories import make_destination, make_detection; "
            f"make_detection('Suspicious Login Attempts', "
            f"make_destination('SecOps', '{ROUTING_KEY}'))"
        )
        for args, stdin in [
            (["shell", "-c", setup], ""),
            (["record_detection_run"], json.dumps(RUN_BODY)),
        ]:
            step = subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=other_shell,
                input=stdin,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert step.returncode == 0, step.stderr
        deadline = time.monotonic() + 30
        while not fake.received and time.monotonic() < deadline:
            time.sleep(0.1)
        assert fake.received, "the worker never delivered the run"
    output = stopped.output

    assert fake.received[0].json["client_url"] == f"http://127.0.0.1:{port}/admin/"
    assert f"Serving http://127.0.0.1:{port}/admin/ (Ctrl-C stops everything)" in output
    assert f"PagerDuty events go to {fake.url} (PAGERDUTY_EVENTS_URL)" in output
    assert "Note: PAGERDUTY_EVENTS_URL is set in this shell only" in output
    assert "Stopped: the web server and the delivery worker have exited." in output
    assert "make: ***" not in output, output[-2000:]
    assert "Error 130" not in output
    # The web server and the worker are gone with it.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    # make ends itself with the interrupt it was sent (silent in a shell); the recipe exited 0.
    assert stopped.returncode == -signal.SIGINT


RUN_BODY = {
    "detection_name": "Suspicious Login Attempts",
    "run_id": "make-run-1",
    "run_type": "MANUAL",
    "match_count": 3,
    "ran_at": "2026-05-01T12:00:00Z",
    "range_start": "2026-05-01T11:00:00Z",
    "range_end": "2026-05-01T12:00:00Z",
}


def make_run_site(tmp_path) -> tuple[int, dict[str, str]]:
    """A free port in a fresh .env (WEB_BIND and plain HTTP), and the environment of a new user."""
    port = free_port()
    env_file = tmp_path / ".env"
    env_file.write_text(
        f"WEB_BIND=127.0.0.1:{port}\nSECURE_SSL_REDIRECT=False\nSESSION_COOKIE_SECURE=False\n"
    )
    shared = {
        name: value
        for name, value in os.environ.items()
        if name not in {"SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DJANGO_SETTINGS_MODULE"}
        and name not in {"DATABASE_URL", *UNSET}
    }
    shared.update(ENV_FILE=str(env_file), DATA_DIR=str(tmp_path / "data"), WEB_WORKERS="1")
    return port, shared


@pytest.mark.slow
def test_make_run_on_a_port_something_else_serves_says_so_and_starts_nothing(tmp_path):
    port, shared = make_run_site(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", port))
        listener.listen()
        result = subprocess.run(
            ["make", "run"], cwd=ROOT, env=shared, capture_output=True, text=True, timeout=180
        )

    assert result.returncode == 2  # make's own code for a recipe that failed
    assert (
        f"Cannot serve on 127.0.0.1:{port}: something else listens there. Stop it, or serve "
        f"elsewhere with WEB_BIND (for example WEB_BIND=127.0.0.1:8001) in {tmp_path / '.env'}."
    ) in result.stderr
    assert "Serving" not in result.stdout
    assert "web.1" not in result.stdout + result.stderr  # neither process was started


@pytest.mark.slow
def test_make_run_names_a_destination_without_a_key_and_serves_the_others(tmp_path):
    # One destination's unusable key is reported, but must not stop every other destination's pages.
    port, shared = make_run_site(tmp_path)
    for args in (
        [sys.executable, "-m", "project.envfile"],
        [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
        [
            sys.executable,
            "manage.py",
            "shell",
            "-c",
            "from destinations.models import Destination; Destination.objects.bulk_create("
            "[Destination(name='Restored rota', routing_key='')])",
        ],
    ):
        step = subprocess.run(
            args, cwd=ROOT, env=shared, capture_output=True, text=True, timeout=60
        )
        assert step.returncode == 0, step.stderr
    with running_make_run(shared, f"http://127.0.0.1:{port}/healthz") as stopped:
        pass
    output = stopped.output
    assert "destinations.E003" in output
    assert "Restored rota" in output
    assert f"Serving http://127.0.0.1:{port}/admin/" in output
