"""Slow or lying clients against the Procfile's web server, started as `make run` starts it."""

import json
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import requests

from bench.sites import PYTHON, Site, free_port, stop, wait_until
from tests.support.factories import run_body

pytestmark = pytest.mark.slow

# What a monitor or a person on the admin may wait for while others misbehave.
PROMPT_SECONDS = 1.0
SLOW_CLIENTS = 8
# Short, so the test does not wait out the default (10 s).
READ_TIMEOUT_SECONDS = 2


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    """The Procfile's `web` process of a throwaway site, run by honcho as `make run` runs it."""
    site = Site.create(tmp_path_factory.mktemp("web") / "site", events_url="http://127.0.0.1:9/")
    site.manage("migrate", "--noinput", "-v", "0")
    token = site.manage("create_api_token", "engine").stdout.strip().splitlines()[-1]
    port = free_port()
    site = site.with_env(
        WEB_BIND=f"127.0.0.1:{port}",
        WEB_READ_TIMEOUT_SECONDS=str(READ_TIMEOUT_SECONDS),
        # The Procfile's gunicorn is this interpreter's (project/serve.py sets PATH so too).
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    process = site.spawn(PYTHON, "-m", "honcho", "start", "--env", os.devnull, "web", log="web")
    base = f"http://127.0.0.1:{port}"
    if not wait_until(lambda: _answers(base), timeout=60):
        stop(process)
        raise RuntimeError(
            f"the web process did not answer: {(site.data_dir / 'web.out').read_text()}"
        )
    yield base, token, site.data_dir / "web.out"
    stop(process)


def _answers(base: str) -> bool:
    try:
        requests.get(f"{base}/healthz", timeout=2)
    except requests.RequestException:
        return False
    return True


def healthz_seconds(base: str) -> float:
    started = time.monotonic()
    answer = requests.get(f"{base}/healthz", timeout=30)
    assert answer.status_code == 200
    return time.monotonic() - started


def connect(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=30)


def read_answer(conn: socket.socket) -> tuple[str, str]:
    """An HTTP answer's status line and body, read as far as its Content-Length."""
    stream = conn.makefile("rb")
    status_line = stream.readline().decode().rstrip("\r\n")
    length = 0
    while (line := stream.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    return status_line, stream.read(length).decode()


def test_clients_hanging_mid_header_do_not_delay_the_health_check(web):
    base, _, _ = web
    hanging = []
    try:
        for _ in range(SLOW_CLIENTS):
            conn = connect(base)
            conn.sendall(b"GET /admin/login/ HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: slo")
            hanging.append(conn)
        time.sleep(0.5)  # each is taken up by the server and left hanging mid-header

        waits = [healthz_seconds(base) for _ in range(5)]
    finally:
        for conn in hanging:
            conn.close()

    assert max(waits) < PROMPT_SECONDS, waits


def test_a_body_shorter_than_its_content_length_is_refused_cleanly_without_stalling_others(web):
    base, token, log = web
    body = json.dumps(run_body(run_id="never-finished")).encode()
    head = (
        "POST /api/v1/detection-runs HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) + 1000}\r\n\r\n"
    ).encode()
    liars = [connect(base) for _ in range(SLOW_CLIENTS)]
    started = time.monotonic()
    for liar in liars:
        liar.sendall(head + body)

    waits = [healthz_seconds(base) for _ in range(5)]
    answers = [read_answer(liar) for liar in liars]
    took = time.monotonic() - started
    for liar in liars:
        liar.close()

    assert max(waits) < PROMPT_SECONDS, waits
    refused = json.dumps({"errors": {"body": ["The body could not be read completely."]}})
    assert answers == [("HTTP/1.1 400 Bad Request", refused)] * SLOW_CLIENTS
    # Answered once the read timeout passed, not when gunicorn's worker timeout (30 s) would.
    assert READ_TIMEOUT_SECONDS <= took < READ_TIMEOUT_SECONDS + 8
    output = log.read_text()
    assert "WORKER TIMEOUT" not in output
    assert '" 500 ' not in output
