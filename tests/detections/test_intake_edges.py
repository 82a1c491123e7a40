"""The API's edges: big error reports, long replay links, chunked bodies, an unreachable DB."""

# Each edge once refused a run that had to page someone, or answered an HTML 500. Bodies go
# through Django's test client where the request's framing does not matter, and through gunicorn,
# started as the Procfile starts it, where it does (chunked bodies, a database that is not there).

import contextlib
import io
import json
import socket
from pathlib import Path

import pytest
import requests
from django.core.management import CommandError, call_command
from django.db import DataError, OperationalError, connection
from django.test import Client, RequestFactory

from bench.sites import PYTHON, Site, free_port, stop, wait_until
from destinations.pagerduty.events import SUMMARY_MAX_LENGTH
from detections import api
from detections.intake import MAX_BODY_BYTES, MAX_STORED_ERROR_LENGTH, MAX_STORED_ERRORS
from detections.models import DetectionRun
from tests.support.factories import (
    DETECTION_NAME,
    RUNS_URL,
    make_detection,
    post_run,
    run_body,
    stored_counts,
)
from tests.support.routing_keys import ROUTING_KEY

RETRY_LATER = "The database is unreachable; nothing was stored. Retry later."
STACK_TRACE_BYTES = 90 * 1024  # the issue's report: 10 errors of 90 KB each

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def detection(destination):
    """One destination only, so each test reads the one event PagerDuty accepted."""
    return make_detection(DETECTION_NAME, destination, severity="HIGH")


def delivered_event(fake_pagerduty) -> dict:
    """Run the worker once and return the one event PagerDuty accepted."""
    call_command("deliver_alerts", "--once")
    [record] = fake_pagerduty.accepted
    return record.json


# Errors: any number, any size, within the 1 MB body.


def test_ten_stack_traces_of_90_kb_are_recorded_and_page_on_call(
    client, token, detection, fake_pagerduty
):
    traces = [f"Traceback {n}:\n" + "  at frame()\n" * (STACK_TRACE_BYTES // 13) for n in range(10)]
    raw = json.dumps(run_body(errors=traces)).encode()
    assert 900_000 < len(raw) < MAX_BODY_BYTES

    response = post_run(client, raw, token)

    assert response.status_code == 201, response.content[:300]
    assert response.json()["outcome"] == "ERROR"
    run = DetectionRun.objects.get()
    assert run.errors_total == 10
    assert [len(error) for error in run.errors] == [MAX_STORED_ERROR_LENGTH] * 10
    assert all(
        stored == trace[: MAX_STORED_ERROR_LENGTH - 1] + "…"
        for stored, trace in zip(run.errors, traces, strict=True)
    )
    event = delivered_event(fake_pagerduty)
    assert event["routing_key"] == ROUTING_KEY
    assert event["payload"]["custom_details"]["errors"] == run.errors
    assert "errors_total" not in event["payload"]["custom_details"]


def test_thousands_of_errors_store_the_first_ones_and_the_page_counts_them_all(
    client, token, detection, fake_pagerduty
):
    errors = [f"shard {n} timed out" for n in range(20_000)]

    response = post_run(client, run_body(errors=errors), token)

    assert response.status_code == 201, response.content[:300]
    run = DetectionRun.objects.get()
    assert run.errors == errors[:MAX_STORED_ERRORS]
    assert run.errors_total == 20_000
    details = delivered_event(fake_pagerduty)["payload"]["custom_details"]
    assert details["errors"] == errors[:10]
    assert details["errors_total"] == 20_000


def test_a_huge_error_object_is_kept_as_its_json_text_shortened(client, token, detection):
    small = {"code": "E42", "shard": 7}
    huge = {"code": "E500", "trace": "x" * 50_000}

    response = post_run(client, run_body(errors=[small, huge]), token)

    assert response.status_code == 201, response.content[:300]
    kept_small, kept_huge = DetectionRun.objects.get().errors
    assert kept_small == small
    assert kept_huge == json.dumps(huge)[: MAX_STORED_ERROR_LENGTH - 1] + "…"


def test_an_error_with_a_nul_character_is_still_refused_as_unstorable(client, token, detection):
    response = post_run(client, run_body(errors=["disk \x00 full"]), token)

    assert response.status_code == 400
    assert "NUL" in response.json()["errors"]["errors"][0]
    assert stored_counts() == (0, 0)


# Replay links up to 8,192 characters.


def test_the_issues_981_character_link_is_accepted_and_whole_in_the_summary(
    client, token, detection, fake_pagerduty
):
    link = "https://siem.example.com/replay?q=" + "a" * (981 - 34)
    assert len(link) == 981

    response = post_run(client, run_body(replay_link=link), token)

    assert response.status_code == 201, response.content[:300]
    assert DetectionRun.objects.get().replay_link == link
    payload = delivered_event(fake_pagerduty)["payload"]
    assert payload["summary"] == f"[HIGH] {DETECTION_NAME} - {link}"


def test_an_8192_character_link_is_stored_and_sent_whole_the_summary_cut(
    client, token, detection, fake_pagerduty
):
    link = "https://siem.example.com/replay?q=" + "a" * (8192 - 34)

    response = post_run(client, run_body(replay_link=link), token)

    assert response.status_code == 201, response.content[:300]
    assert DetectionRun.objects.get().replay_link == link
    event = delivered_event(fake_pagerduty)
    summary = event["payload"]["summary"]
    assert len(summary) == SUMMARY_MAX_LENGTH
    assert summary.startswith(f"[HIGH] {DETECTION_NAME} - https://siem.example.com/replay?q=aaa")
    assert summary.endswith("a…")
    assert event["payload"]["source"] == link
    assert event["links"][0]["href"] == link
    assert event["payload"]["custom_details"]["replay_link"] == link


def test_a_link_over_8192_characters_is_refused_by_name(client, token, detection):
    link = "https://siem.example.com/replay?q=" + "a" * (8193 - 34)

    response = post_run(client, run_body(replay_link=link), token)

    assert response.status_code == 400
    assert response.json()["errors"]["replay_link"] == [
        "It must be at most 8192 characters; got 8193."
    ]
    assert stored_counts() == (0, 0)


# Chunked bodies, through Django's WSGI handler with the environ a server gives.


def chunked_request(raw: bytes, token: str, *, terminated: bool = True):
    """A request as a WSGI server hands over a de-chunked body: no Content-Length."""
    request = RequestFactory().post(
        RUNS_URL,
        data=b"",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}", "Transfer-Encoding": "chunked"},
    )
    request.META.pop("CONTENT_LENGTH", None)
    request.environ["wsgi.input"] = io.BytesIO(raw)
    if terminated:
        request.environ["wsgi.input_terminated"] = True
    return request


def test_a_chunked_body_is_read(token, detection):
    response = api.detection_runs(chunked_request(json.dumps(run_body()).encode(), token))

    assert response.status_code == 201, response.content
    assert stored_counts() == (1, 1)


def test_a_chunked_body_over_one_megabyte_is_413(token, detection):
    raw = json.dumps(run_body()).encode()
    response = api.detection_runs(chunked_request(raw + b" " * MAX_BODY_BYTES, token))

    assert response.status_code == 413
    assert stored_counts() == (0, 0)


def test_a_chunked_body_a_server_cannot_end_is_411_not_read_as_empty(token, detection):
    request = chunked_request(json.dumps(run_body()).encode(), token, terminated=False)

    response = api.detection_runs(request)

    assert response.status_code == 411
    assert "Content-Length" in json.loads(response.content)["errors"]["body"][0]
    assert stored_counts() == (0, 0)


# The database unreachable: 503 JSON with Retry-After, nothing stored.


@contextlib.contextmanager
def database_not_there(tmp_path: Path):
    """Point the connection at a database that really is not there, then back."""
    connection.close()
    saved = dict(connection.settings_dict)
    if connection.vendor == "sqlite":
        connection.settings_dict["NAME"] = str(tmp_path / "no-such-folder" / "db.sqlite3")
    else:
        connection.settings_dict.update(HOST="127.0.0.1", PORT=str(free_port()))
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict.clear()
        connection.settings_dict.update(saved)


def assert_retry_later(response) -> None:
    assert response.status_code == 503
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == str(api.DATABASE_RETRY_AFTER_SECONDS)
    assert response.json() == {"errors": {"database": [RETRY_LATER]}}


def test_an_unreachable_database_is_503_json_with_retry_after(client, token, detection, tmp_path):
    with database_not_there(tmp_path):
        response = post_run(client, run_body(), token)

    assert_retry_later(response)
    assert stored_counts() == (0, 0)
    # Once it is back, the same post is recorded.
    assert post_run(client, run_body(), token).status_code == 201


def test_a_connection_lost_midway_through_recording_stores_nothing(client, token, detection):
    def lose_connection(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith('INSERT INTO "DESTINATIONS_DELIVERY"'):
            raise OperationalError("server closed the connection unexpectedly")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(lose_connection):
        response = post_run(client, run_body(), token)

    assert_retry_later(response)
    assert stored_counts() == (0, 0)


@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="terminates a PostgreSQL backend")
def test_a_backend_terminated_midway_through_recording_stores_nothing(client, token, detection):
    # A real broken connection: another session ends ours once the run's row is written.
    def terminate_after_the_run(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith('INSERT INTO "DETECTIONS_DETECTIONRUN"'):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                [pid] = cursor.fetchone()
            other = connection.copy()
            try:
                with other.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
            finally:
                other.close()
        return result

    try:
        with connection.execute_wrapper(terminate_after_the_run):
            response = post_run(client, run_body(), token)
    finally:
        connection.close()

    assert_retry_later(response)
    assert stored_counts() == (0, 0)


def test_a_data_error_is_not_mistaken_for_an_outage(token, detection):
    def refuse(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith('INSERT INTO "DETECTIONS_DETECTIONRUN"'):
            raise DataError("value too long")
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refuse):
        response = post_run(Client(raise_request_exception=False), run_body(), token)

    # A bug to fix, not a reason to retry: it stays a 500 (and the engine is not told to wait).
    assert response.status_code == 500
    assert "Retry-After" not in response
    assert stored_counts() == (0, 0)


def test_the_command_says_to_run_again_when_the_database_is_unreachable(
    detection, tmp_path, capsys
):
    body = tmp_path / "run.json"
    body.write_text(json.dumps(run_body()))

    with database_not_there(tmp_path), pytest.raises(CommandError) as refused:
        call_command("record_detection_run", str(body))

    assert "The database is unreachable (OperationalError); nothing was stored." in str(
        refused.value
    )
    assert stored_counts() == (0, 0)


# Through gunicorn, as the Procfile runs it.


def start_gunicorn(site: Site, *, workers: int = 1) -> tuple[object, str]:
    port = free_port()
    process = site.spawn(
        PYTHON,
        "-m",
        "gunicorn",
        "project.wsgi",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        # Each site's own: the default control socket is one path for every gunicorn.
        "--control-socket",
        str(site.data_dir / "gunicorn.ctl"),
        log="web",
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            requests.get(f"{base}/healthz", timeout=2)
        except requests.RequestException:
            return False
        return True

    if not wait_until(answers, timeout=30):
        stop(process)
        raise RuntimeError("gunicorn did not answer within 30 seconds")
    return process, base


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A throwaway site with a token and a detection, served by gunicorn."""
    site = Site.create(tmp_path_factory.mktemp("edges") / "site", events_url="http://127.0.0.1:9/")
    site.manage("migrate", "--noinput", "-v", "0")
    token = site.manage("create_api_token", "engine").stdout.strip().splitlines()[-1]
    site.manage(
        "shell",
        "-c",
        f"from detections.models import Detection; Detection(name={DETECTION_NAME!r}).save()",
    )
    process, base = start_gunicorn(site)
    yield base, token
    stop(process)


def in_chunks(raw: bytes, size: int = 64 * 1024):
    """A generator body, which requests sends with Transfer-Encoding: chunked."""
    for start in range(0, len(raw), size):
        yield raw[start : start + size]


def body_of(size: int, run_id: str) -> bytes:
    """A valid run body of about `size` bytes, carried by its errors."""
    base = json.dumps(run_body(run_id=run_id, errors=[])).encode()
    return json.dumps(run_body(run_id=run_id, errors=["e" * (size - len(base) - 4)])).encode()


def post_to(base: str, token: str, data) -> requests.Response:
    return requests.post(
        f"{base}/api/v1/detection-runs",
        data=data,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=30,
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=False)
def test_gunicorn_records_a_chunked_500_kb_body(served):
    base, token = served
    raw = body_of(500_000, "chunked-500k")

    response = post_to(base, token, in_chunks(raw))

    assert response.request.headers["Transfer-Encoding"] == "chunked"
    assert response.status_code == 201, response.text[:300]
    assert response.json()["run_id"] == "chunked-500k"
    # Recorded once: the same body again is the 200 of a repeat, not a second run.
    assert post_to(base, token, in_chunks(raw)).status_code == 200


@pytest.mark.slow
@pytest.mark.django_db(transaction=False)
def test_gunicorn_answers_413_to_a_chunked_2_mb_body(served):
    base, token = served

    response = post_to(base, token, in_chunks(body_of(2_000_000, "chunked-2mb")))

    assert response.status_code == 413
    assert response.json() == {
        "errors": {"body": [f"The body is over {MAX_BODY_BYTES} bytes; send less."]}
    }
    assert post_to(base, token, body_of(1000, "chunked-2mb")).status_code == 201  # not stored


@pytest.mark.slow
@pytest.mark.django_db(transaction=False)
def test_gunicorn_answers_413_to_a_declared_2_mb_body_before_reading_it(served):
    base, token = served
    host, port = base.removeprefix("http://").split(":")
    # Only the headers are sent: an answer proves the server did not wait to read the body.
    head = (
        f"POST /api/v1/detection-runs HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        "Content-Length: 2000000\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head.encode())
        answer = conn.makefile("rb").read()

    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 413 ")
    assert rest.endswith(
        json.dumps(
            {"errors": {"body": [f"The body is over {MAX_BODY_BYTES} bytes; send less."]}}
        ).encode()
    )


@pytest.mark.slow
@pytest.mark.django_db(transaction=False)
def test_gunicorn_answers_503_json_when_the_database_is_not_there(tmp_path):
    # A PostgreSQL URL whose port nobody listens on: the driver fails to connect, for real.
    site = Site.create(
        tmp_path / "site",
        events_url="http://127.0.0.1:9/",
        database_url=f"postgres://postgres@127.0.0.1:{free_port()}/nowhere",
    )
    process, base = start_gunicorn(site)
    try:
        token = "dd_0123456789ab_" + "x" * 43  # well formed, so it is looked up
        response = post_to(base, token, in_chunks(json.dumps(run_body()).encode()))
        health = requests.get(f"{base}/healthz", timeout=10)
    finally:
        stop(process)

    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Retry-After"] == str(api.DATABASE_RETRY_AFTER_SECONDS)
    assert response.json() == {"errors": {"database": [RETRY_LATER]}}
    assert health.status_code == 503
    assert health.json()["status"] == "error"
