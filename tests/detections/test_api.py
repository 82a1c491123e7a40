"""POST /api/v1/detection-runs as a detection engine meets it: answers, stored rows, refusals."""

import io
import json
import threading
import uuid
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.utils import timezone

from destinations.models import Delivery, DeliveryStatus
from detections import api, services
from detections.intake import MAX_BODY_BYTES
from detections.models import MAX_COUNT, ApiToken, DetectionRun
from detections.tokens import create_api_token
from tests.support.factories import (
    DETECTION_NAME,
    RUNS_URL,
    post_run,
    run_body,
    stored_counts,
)
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

# Recorded.


def test_matched_run_is_recorded_and_queues_one_pending_delivery_per_enabled_destination(
    client, token, detection
):
    response = post_run(client, run_body(), token=token)

    assert response.status_code == 201
    answer = response.json()
    deliveries = list(Delivery.objects.order_by("pk"))
    assert answer == {
        "run_id": "run-1",
        "detection_id": str(detection.pk),
        "detection_name": DETECTION_NAME,
        "outcome": "MATCHED",
        "deliveries": [
            {"id": deliveries[0].pk, "destination": "SecOps on-call", "status": "pending"},
            {"id": deliveries[1].pk, "destination": "Platform on-call", "status": "pending"},
        ],
    }
    run = DetectionRun.objects.get()
    assert (run.detection, run.run_type, run.match_count) == (detection, "SCHEDULED", 5)
    assert run.range_end.isoformat() == "2026-05-01T12:00:00+00:00"
    assert all(d.run == run and d.status == DeliveryStatus.PENDING for d in deliveries)
    assert not Delivery.objects.filter(destination__name="Retired rota").exists()


def test_error_run_pages_too_and_keeps_its_errors(client, token, detection):
    errors = ["search timed out", {"code": 504, "detail": "backend unavailable"}]
    response = post_run(client, run_body(match_count=0, errors=errors), token=token)

    assert response.status_code == 201
    assert response.json()["outcome"] == "ERROR"
    assert Delivery.objects.count() == 2
    assert DetectionRun.objects.get().errors == errors


def test_not_matched_run_is_recorded_without_deliveries(client, token, detection):
    response = post_run(client, run_body(match_count=0), token=token)

    assert response.status_code == 201
    assert response.json()["outcome"] == "NOT_MATCHED"
    assert response.json()["deliveries"] == []
    assert stored_counts() == (1, 0)


def test_a_disabled_detection_records_its_run_without_paging(client, token, detection):
    detection.enabled = False
    detection.save()

    response = post_run(client, run_body(), token=token)

    assert response.status_code == 201
    assert response.json()["deliveries"] == []
    assert stored_counts() == (1, 0)


def test_detection_can_be_named_by_id(client, token, detection):
    body = run_body(detection_name=..., detection_id=str(detection.pk))
    response = post_run(client, body, token=token)

    assert response.status_code == 201
    assert response.json()["detection_name"] == DETECTION_NAME


def test_optional_fields_are_stored(client, token, detection):
    link = "https://siem.example.com/replay/123?q=a%20b"
    body = run_body(
        match_exhaustiveness="STOPPED_EARLY",
        search_id="s-1",
        trace_id="t-1",
        replay_link=link,
        run_type="MANUAL",
    )
    assert post_run(client, body, token=token).status_code == 201

    run = DetectionRun.objects.get()
    assert (run.match_exhaustiveness, run.search_id, run.trace_id) == (
        "STOPPED_EARLY",
        "s-1",
        "t-1",
    )
    assert (run.replay_link, run.run_type) == (link, "MANUAL")
    assert Delivery.objects.first().event["links"][0]["href"] == link


def test_stored_events_never_hold_the_routing_key(client, token, detection):
    assert post_run(client, run_body(), token=token).status_code == 201

    for delivery in Delivery.objects.all():
        text = json.dumps(delivery.event)
        assert ROUTING_KEY not in text and OTHER_ROUTING_KEY not in text
        assert "routing_key" not in delivery.event


def test_csrf_is_not_required(token, detection):
    response = post_run(Client(enforce_csrf_checks=True), run_body(), token=token)
    assert response.status_code == 201


def test_trailing_slash_is_accepted(client, token, detection):
    response = client.post(
        RUNS_URL + "/",
        data=json.dumps(run_body()),
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 201


def test_a_small_upload_limit_in_settings_does_not_refuse_a_valid_body(
    client, token, detection, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    assert post_run(client, run_body(), token=token).status_code == 201


# Idempotency.


def test_repeated_run_id_returns_the_stored_run_and_creates_nothing(client, token, detection):
    first = post_run(client, run_body(), token=token)
    counts = stored_counts()

    second = post_run(client, run_body(), token=token)

    assert (first.status_code, second.status_code) == (201, 200)
    assert second.json() == first.json()
    assert stored_counts() == counts


def test_repeat_with_different_values_keeps_the_stored_run_and_warns(client, token, detection):
    first = post_run(client, run_body(), token=token)

    second = post_run(client, run_body(match_count=0, errors=["late"]), token=token)

    assert second.status_code == 200
    answer = second.json()
    assert "match_count" in answer.pop("warning") and answer == first.json()
    assert DetectionRun.objects.get().match_count == 5
    assert stored_counts() == (1, 2)


def test_repeat_is_answered_even_after_the_detection_was_renamed(client, token, detection):
    first = post_run(client, run_body(), token=token)
    detection.name = "Renamed"
    detection.save()

    second = post_run(client, run_body(), token=token)

    assert second.status_code == 200
    assert second.json()["deliveries"] == first.json()["deliveries"]


def test_a_repeat_that_loses_the_race_for_the_run_id_gets_the_stored_run(
    client, token, detection, monkeypatch
):
    first = post_run(client, run_body(), token=token)
    # The second post looks for the run before the first one's row is visible to it.
    looked_up = []
    real_lookup = services.recorded_run

    def not_visible_yet(run_id):
        looked_up.append(run_id)
        return None if len(looked_up) == 1 else real_lookup(run_id)

    monkeypatch.setattr(services, "recorded_run", not_visible_yet)
    second = post_run(client, run_body(), token=token)

    assert second.status_code == 200
    assert second.json() == first.json()
    assert stored_counts() == (1, 2)


@pytest.mark.django_db(transaction=True)
def test_simultaneous_posts_of_one_run_id_store_one_run(destination):
    from tests.support.factories import make_detection

    make_detection(DETECTION_NAME, destination)
    raw_token = create_api_token(name="engine")
    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send() -> None:
        try:
            barrier.wait(5)
            statuses.append(post_run(Client(), run_body(), token=raw_token).status_code)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert sorted(statuses) == [200, 200, 200, 201]
    assert stored_counts() == (1, 1)


# Refused bodies: 400 with the field's messages, and nothing stored.


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


REFUSALS = [
    # (body changes, field named in the answer, words the message contains)
    ({"run_id": ...}, "run_id", "required"),
    ({"run_id": None}, "run_id", "null"),
    ({"run_id": "  "}, "run_id", "blank"),
    ({"run_id": "r" * 256}, "run_id", "at most 255"),
    ({"run_id": 7}, "run_id", "string"),
    ({"run_id": "a\x00b"}, "run_id", "NUL"),
    ({"run_type": "scheduled"}, "run_type", "SCHEDULED, MANUAL"),
    ({"match_count": True}, "match_count", "boolean"),
    ({"match_count": 5.0}, "match_count", "whole number"),
    ({"match_count": "5"}, "match_count", "string"),
    ({"match_count": -1}, "match_count", "0 or more"),
    ({"match_count": MAX_COUNT + 1}, "match_count", "at most"),
    ({"ran_at": "2026-05-01T12:00:00"}, "ran_at", "no UTC offset"),
    ({"ran_at": "yesterday"}, "ran_at", "ISO 8601"),
    ({"ran_at": 1714564800}, "ran_at", "ISO 8601"),
    ({"range_start": "0001-01-01T00:00:00+01:00"}, "range_start", "out of range"),
    ({"range_start": "2026-05-02T00:00:00Z"}, "range_end", "before range_start"),
    ({"match_exhaustiveness": "DONE"}, "match_exhaustiveness", "COMPLETED, STOPPED_EARLY"),
    ({"search_id": "s" * 256}, "search_id", "at most 255"),
    ({"trace_id": ["t"]}, "trace_id", "string"),
    ({"errors": "boom"}, "errors", "list"),
    ({"errors": [1]}, "errors", "Item 0"),
    ({"errors": [{"a": nested(40)}]}, "errors", "nested"),
    ({"replay_link": "ftp://siem.example.com/r/1"}, "replay_link", "http(s) URL"),
    ({"replay_link": "/replay/1"}, "replay_link", "http(s) URL"),
    ({"detection_name": ...}, "detection", "Give detection_id or detection_name"),
    ({"detection_id": str(uuid.uuid4())}, "detection", "not both"),
    ({"detection_name": ..., "detection_id": "42"}, "detection_id", "not a UUID"),
    ({"match_cnt": 5}, "match_cnt", "Did you mean match_count?"),
]


@pytest.mark.parametrize(("changes", "field", "words"), REFUSALS)
def test_invalid_field_is_refused_by_name(client, token, detection, changes, field, words):
    response = post_run(client, run_body(**changes), token=token)

    assert response.status_code == 400
    messages = response.json()["errors"][field]
    assert any(words in message for message in messages), messages
    assert stored_counts() == (0, 0)


def test_every_invalid_field_is_reported_at_once(client, token, detection):
    response = post_run(client, run_body(match_count="5", run_type="x", extra=1), token=token)

    assert response.status_code == 400
    assert set(response.json()["errors"]) == {"match_count", "run_type", "extra"}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("[1, 2]", "must be a JSON object; got a list"),
        ('"run"', "must be a JSON object; got a string"),
        ("null", "must be a JSON object; got null"),
        ("", "empty"),
        ("{not json", "not valid JSON"),
        ('{"match_count": NaN}', "NaN is not a JSON number"),
        ('{"errors": [{"n": 1e999}]}', "too large"),
        ('{"run_id": "a", "run_id": "b"}', "appears twice"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"match_count": ' + "9" * 5000 + "}", "more than 100 digits"),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(client, token, detection, raw, words):
    response = post_run(client, raw, token=token)

    assert response.status_code == 400
    (message,) = response.json()["errors"]["body"]
    assert words in message
    assert stored_counts() == (0, 0)


def test_lone_surrogates_are_refused_not_stored(client, token, detection):
    raw = json.dumps(run_body()).replace('"run-1"', '"run-\\ud800"')
    response = post_run(client, raw, token=token)

    assert response.status_code == 400
    assert "surrogate" in response.json()["errors"]["run_id"][0]
    assert stored_counts() == (0, 0)


# Unknown detection: 404, checked after the body.


def test_unknown_detection_name_is_404(client, token, detection):
    response = post_run(client, run_body(detection_name="Nope"), token=token)

    assert response.status_code == 404
    assert response.json() == {"errors": {"detection": ["No detection with name “Nope”."]}}
    assert stored_counts() == (0, 0)


def test_unknown_detection_id_is_404(client, token, detection):
    missing = uuid.uuid4()
    response = post_run(
        client, run_body(detection_name=..., detection_id=str(missing)), token=token
    )

    assert response.status_code == 404
    assert str(missing) in response.json()["errors"]["detection"][0]


def test_an_invalid_body_is_400_even_for_an_unknown_detection(client, token, detection):
    response = post_run(client, run_body(detection_name="Nope", match_count=-1), token=token)
    assert response.status_code == 400


# Authorization: checked first, 401 with a Bearer challenge.


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic ZW5naW5lOnNlY3JldA==",
        "Bearer",
        "Bearer ",
        "Token dd_0123456789ab_" + "x" * 43,
        "Bearer dd_0123456789ab_" + "x" * 43,
        "Bearer not-a-token",
    ],
)
def test_missing_or_unknown_token_is_401(client, detection, header):
    headers = {} if header is None else {"Authorization": header}
    response = client.post(
        RUNS_URL, data=json.dumps(run_body()), content_type="application/json", headers=headers
    )

    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert list(response.json()["errors"]) == ["authorization"]
    assert stored_counts() == (0, 0)


def test_a_wrong_secret_with_a_real_prefix_is_401(client, token, detection):
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert post_run(client, run_body(), token=forged).status_code == 401


def test_token_is_checked_before_the_body(client, detection):
    response = post_run(client, "{not json", token=None)
    assert response.status_code == 401


def test_scheme_is_case_insensitive(client, token, detection):
    response = client.post(
        RUNS_URL,
        data=json.dumps(run_body()),
        content_type="application/json",
        headers={"Authorization": f"bearer {token}"},
    )
    assert response.status_code == 201


def test_last_used_at_is_stamped_at_most_once_a_minute(client, token, detection):
    post_run(client, run_body(run_id="a"), token=token)
    first_stamp = ApiToken.objects.get().last_used_at
    post_run(client, run_body(run_id="b"), token=token)
    assert first_stamp is not None
    assert ApiToken.objects.get().last_used_at == first_stamp

    ApiToken.objects.update(last_used_at=timezone.now() - timedelta(minutes=2))
    post_run(client, run_body(run_id="c"), token=token)
    assert ApiToken.objects.get().last_used_at > first_stamp


# Size and method.


@pytest.mark.parametrize("errors", [1100, 3000])  # 3000: over Django's own upload limit too
def test_a_body_over_one_megabyte_is_413(client, token, detection, errors):
    raw = json.dumps(run_body(errors=["x" * 1000] * errors))
    assert len(raw) > MAX_BODY_BYTES

    response = post_run(client, raw, token=token)

    assert response.status_code == 413
    assert "body" in response.json()["errors"]
    assert stored_counts() == (0, 0)


def test_a_body_longer_than_its_declared_length_is_413(token, detection):
    raw = json.dumps(run_body(errors=["x" * 1000] * 1100)).encode()
    request = RequestFactory().post(
        RUNS_URL,
        data=b"{}",
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )
    request._stream = io.BytesIO(raw)  # a stream that holds more than Content-Length said

    response = api.detection_runs(request)

    assert response.status_code == 413
    assert stored_counts() == (0, 0)


@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_methods_are_405(client, token, method):
    response = getattr(client, method)(RUNS_URL, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "method" in response.json()["errors"]
