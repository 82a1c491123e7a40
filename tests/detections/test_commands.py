"""The intake's command-line doors: create_api_token and record_detection_run."""

import hashlib
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from destinations.models import Delivery
from detections.models import ApiToken, DetectionRun
from detections.tokens import authenticate_token
from tests.support.factories import DETECTION_NAME, make_detection, run_body

BODY = run_body(
    run_id="cli-1",
    run_type="MANUAL",
    match_count=3,
    range_start="2026-05-01T11:00:00Z",
    range_end="2026-05-01T12:00:00Z",
)


@pytest.fixture
def detection(destination):
    """The suite's detection with one destination only, so each run queues one page."""
    return make_detection(DETECTION_NAME, destination)


def run_command(*args, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


# create_api_token


@pytest.mark.django_db
def test_create_api_token_prints_the_token_alone_on_its_last_line_and_stores_its_hash():
    out, _ = run_command("create_api_token", "siem")

    token = out.splitlines()[-1]
    assert token.startswith("dd_") and " " not in token and len(token) > 40
    stored = ApiToken.objects.get(name="siem")
    assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert stored.prefix in token and token not in (stored.prefix, stored.token_hash)
    assert authenticate_token(token) == stored
    assert authenticate_token(token + "x") is None


@pytest.mark.django_db
def test_each_token_is_different():
    first = run_command("create_api_token", "a")[0].splitlines()[-1]
    second = run_command("create_api_token", "b")[0].splitlines()[-1]
    assert first != second
    assert authenticate_token(first).name == "a" and authenticate_token(second).name == "b"


@pytest.mark.django_db
def test_a_duplicate_token_name_is_refused():
    run_command("create_api_token", "siem")

    with pytest.raises(CommandError, match="exists already"):
        run_command("create_api_token", "siem")
    assert ApiToken.objects.count() == 1


@pytest.mark.django_db
def test_a_blank_token_name_is_refused():
    with pytest.raises(CommandError, match="needs a name"):
        run_command("create_api_token", "  ")


# record_detection_run


def test_record_detection_run_from_a_file_prints_the_api_answer(detection, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps(BODY))

    out, _ = run_command("record_detection_run", str(path))

    answer = json.loads(out)
    delivery = Delivery.objects.get()
    assert answer == {
        "run_id": "cli-1",
        "detection_id": str(detection.pk),
        "detection_name": DETECTION_NAME,
        "outcome": "MATCHED",
        "deliveries": [{"id": delivery.pk, "destination": "SecOps on-call", "status": "pending"}],
    }
    assert DetectionRun.objects.get().run_type == "MANUAL"


@pytest.mark.parametrize("args", [(), ("-",)])
def test_record_detection_run_reads_stdin(detection, args):
    out, _ = run_command("record_detection_run", *args, stdin=io.StringIO(json.dumps(BODY)))

    assert json.loads(out)["outcome"] == "MATCHED"
    assert DetectionRun.objects.filter(run_id="cli-1").exists()


def test_record_detection_run_reads_the_process_stdin_as_bytes(detection, monkeypatch):
    stdin = io.TextIOWrapper(io.BytesIO(json.dumps(BODY).encode()), encoding="utf-8")
    monkeypatch.setattr("sys.stdin", stdin)

    out, _ = run_command("record_detection_run")

    assert json.loads(out)["run_id"] == "cli-1"


def test_a_repeated_run_prints_the_stored_answer_and_says_so(detection):
    first, _ = run_command("record_detection_run", stdin=io.StringIO(json.dumps(BODY)))

    second, err = run_command("record_detection_run", stdin=io.StringIO(json.dumps(BODY)))

    assert json.loads(second) == json.loads(first)
    assert "recorded before" in err
    assert DetectionRun.objects.count() == 1 and Delivery.objects.count() == 1


def test_bad_input_is_a_command_error_listing_each_field(detection):
    body = {**BODY, "match_count": "3", "match_cnt": 3}

    with pytest.raises(CommandError) as refused:
        run_command("record_detection_run", stdin=io.StringIO(json.dumps(body)))

    message = str(refused.value)
    assert "not recorded" in message
    assert "match_count: It must be a whole number" in message
    assert "match_cnt: Unknown field. Did you mean match_count?" in message
    assert DetectionRun.objects.count() == 0


def test_a_body_that_is_not_json_is_a_command_error(detection):
    with pytest.raises(CommandError, match="body: The body is not valid JSON"):
        run_command("record_detection_run", stdin=io.StringIO("{oops"))


def test_an_unknown_detection_is_a_command_error(detection):
    body = {**BODY, "detection_name": "Nope"}

    with pytest.raises(CommandError, match="No detection with name “Nope”"):
        run_command("record_detection_run", stdin=io.StringIO(json.dumps(body)))
    assert DetectionRun.objects.count() == 0


def test_a_missing_file_is_a_command_error(detection, tmp_path):
    with pytest.raises(CommandError, match="Cannot read"):
        run_command("record_detection_run", str(tmp_path / "missing.json"))


def test_a_body_over_the_api_limit_is_a_command_error(detection):
    huge = json.dumps({**BODY, "errors": ["x" * 1000] * 1100})

    with pytest.raises(CommandError, match="over 1048576 bytes"):
        run_command("record_detection_run", stdin=io.StringIO(huge))
    assert DetectionRun.objects.count() == 0
