"""GET and POST /api/v1/config as a deployment pipeline meets them, and the tokens' scopes."""

import io
import json

import pytest
from django.core.management import call_command

from destinations.models import Destination
from detections.models import ApiToken, Detection, DetectionRun
from detections.tokens import create_api_token
from tests.support.factories import DETECTION_NAME, make_detection, post_run, run_body
from tests.support.leak_guard import find_secrets
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

CONFIG_URL = "/api/v1/config"

FILE = {
    "destinations": [
        {
            "name": "SecOps on-call",
            "routing_key": {"is_secret": True},
            "severity": {"value": "critical"},
            "component": {"value": "identity"},
        },
        {
            "name": "Platform on-call",
            "routing_key": {"is_secret": True, "from_env": "PLATFORM_ROUTING_KEY"},
        },
    ],
    "detections": [
        {
            "name": DETECTION_NAME,
            "severity": "HIGH",
            "match_threshold": 3,
            "destinations": ["SecOps on-call", "Platform on-call"],
        }
    ],
}


@pytest.fixture
def config_token(db) -> str:
    return create_api_token(name="pipeline", scope="config")


def get(client, token):
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.get(CONFIG_URL, headers=headers)


def post(client, token, body, query=""):
    data = body if isinstance(body, str) else json.dumps(body)
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.post(
        CONFIG_URL + query, data=data, content_type="application/json", headers=headers
    )


def test_get_exports_the_configuration_without_any_key(client, config_token, detection):
    response = get(client, config_token)

    assert response.status_code == 200
    answer = response.json()
    assert [d["name"] for d in answer["destinations"]] == [
        "Platform on-call",
        "Retired rota",
        "SecOps on-call",
    ]
    secops = answer["destinations"][2]
    assert secops["routing_key"] == {"is_secret": True}
    assert secops["component"] == {"value": "auth"}
    assert answer["detections"][0]["destinations"] == [
        "Platform on-call",
        "Retired rota",
        "SecOps on-call",
    ]
    assert find_secrets(response.content.decode()) == []
    assert ROUTING_KEY[-4:] not in response.content.decode()


def test_post_applies_the_same_format_and_answers_the_plan(
    client, config_token, destination, monkeypatch
):
    monkeypatch.setenv("PLATFORM_ROUTING_KEY", OTHER_ROUTING_KEY)

    response = post(client, config_token, FILE)

    assert response.status_code == 200
    answer = response.json()
    assert answer["applied"] is True and answer["changed"] is True
    assert answer["plan"] == [
        '~ update destination "SecOps on-call": severity "" → "critical"',
        '~ update destination "SecOps on-call": component "auth" → "identity"',
        '~ update destination "SecOps on-call": group "prod" → ""',
        '+ create destination "Platform on-call"',
        f'+ create detection "{DETECTION_NAME}"',
    ]
    assert answer["changes"][0]["fields"][0] == {
        "option": "severity",
        "old": "",
        "new": "critical",
    }
    secops = Destination.objects.get(name="SecOps on-call")
    assert (secops.component, secops.managed_by, secops.routing_key) == (
        "identity",
        "API",
        ROUTING_KEY,
    )
    assert Destination.objects.get(name="Platform on-call").routing_key == OTHER_ROUTING_KEY
    assert Detection.objects.get().managed_by == "API"

    again = post(client, config_token, FILE).json()
    assert again["changed"] is False
    assert all(line.startswith("= unchanged ") for line in again["plan"])


def test_dry_run_plans_only(client, config_token, destination, monkeypatch):
    monkeypatch.setenv("PLATFORM_ROUTING_KEY", OTHER_ROUTING_KEY)

    answer = post(client, config_token, FILE, "?dry_run=1").json()

    assert answer["applied"] is False and answer["changed"] is True
    assert '+ create destination "Platform on-call"' in answer["plan"]
    assert list(Destination.objects.values_list("name", "component")) == [
        ("SecOps on-call", "auth")
    ]
    assert not Detection.objects.exists()


def test_a_bad_body_is_refused_with_every_path_and_nothing_changes(
    client, config_token, destination
):
    body = json.loads(json.dumps(FILE))
    body["destinations"][0]["custom_details"] = {"value": ["not", "an", "object"]}
    body["detections"][0]["match_threshold"] = "three"

    response = post(client, config_token, body)

    assert response.status_code == 400
    errors = response.json()["errors"]
    assert list(errors) == [
        "destinations[0].custom_details",
        "destinations[1].routing_key.from_env",
        "detections[0].match_threshold",
    ]
    assert "must be a JSON object" in errors["destinations[0].custom_details"][0]
    assert errors["destinations[1].routing_key.from_env"] == [
        "the environment variable PLATFORM_ROUTING_KEY is not set."
    ]
    assert errors["detections[0].match_threshold"] == ["must be a whole number."]
    assert list(Destination.objects.values_list("name", "component", "managed_by")) == [
        ("SecOps on-call", "auth", "")
    ]


def test_keys_are_not_read_from_the_servers_files_over_the_api(
    client, config_token, destination, tmp_path
):
    key_file = tmp_path / "key"
    key_file.write_text(OTHER_ROUTING_KEY)
    body = json.loads(json.dumps(FILE))
    body["destinations"][1]["routing_key"] = {"is_secret": True, "from_file": str(key_file)}

    response = post(client, config_token, body)

    assert response.status_code == 400
    assert response.json()["errors"]["destinations[1].routing_key.from_file"] == [
        "keys are not read from the server's files here; use from_env."
    ]
    assert not Destination.objects.filter(name="Platform on-call").exists()


def test_broken_json_is_a_400_naming_the_body(client, config_token):
    response = post(client, config_token, '{"destinations": [')

    assert response.status_code == 400
    [message] = response.json()["errors"]["body"]
    assert message.startswith("not valid JSON: Expecting value at line 1")


def test_without_a_token_the_config_endpoints_answer_401(client, destination):
    for response in (get(client, None), post(client, None, FILE)):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert Destination.objects.get().managed_by == ""


def test_a_runs_token_gets_403_on_the_config_endpoints(client, token, destination):
    for response in (get(client, token), post(client, token, FILE)):
        assert response.status_code == 403
        [message] = response.json()["errors"]["authorization"]
        assert "scope is runs" in message and "--scope config" in message
        assert 'error="insufficient_scope"' in response["WWW-Authenticate"]
    assert Destination.objects.get().component == "auth"


def test_a_config_token_cannot_record_runs(client, config_token, destination):
    make_detection(DETECTION_NAME, destination)

    response = post_run(client, run_body(), token=config_token)

    assert response.status_code == 403
    assert "scope is config" in response.json()["errors"]["authorization"][0]
    assert not DetectionRun.objects.exists()


def test_a_runs_token_still_records_runs(client, token, destination):
    make_detection(DETECTION_NAME, destination)

    assert post_run(client, run_body(), token=token).status_code == 201
    assert ApiToken.objects.get(name="engine").scope == "runs"


@pytest.mark.parametrize("method", ["put", "delete"])
def test_other_methods_are_405(client, config_token, method):
    response = getattr(client, method)(CONFIG_URL, headers={"Authorization": "Bearer x"})

    assert response.status_code == 405 and response["Allow"] == "GET, POST"


def test_create_api_token_makes_a_config_token_with_scope_config(client, db):
    out = io.StringIO()
    call_command("create_api_token", "pipeline", "--scope", "config", stdout=out)

    token = out.getvalue().splitlines()[-1]
    assert "for GET and POST /api/v1/config (scope config)" in out.getvalue()
    assert ApiToken.objects.get(name="pipeline").scope == "config"
    assert get(client, token).status_code == 200
