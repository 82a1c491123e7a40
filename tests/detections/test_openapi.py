"""The API described: its OpenAPI 3 document, the live API agreeing with it, the docs page."""

import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.core.management.base import CommandError
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi

from detections.intake import EXAMPLE_BODY, KNOWN_FIELDS, MAX_BODY_BYTES, REQUIRED_FIELDS
from tests.support.factories import DETECTION_NAME, RUNS_URL, post_run, run_body

OPENAPI_URL = "/api/v1/openapi.json"
DOCS_URL = "/api/v1/docs"
README = Path(__file__).resolve().parents[2] / "README.md"


def openapi_document(client) -> dict:
    response = client.get(OPENAPI_URL)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    return response.json()


def readme_example() -> dict:
    """The body of the README's curl example for POST /api/v1/detection-runs."""
    section = README.read_text().split("## Detections and the detection-run API", 1)[1]
    [body] = re.findall(r"-d '(\{.*?\})'", section.split("\n## ", 1)[0], flags=re.DOTALL)
    return json.loads(body)


def checker(document: dict, ref: str) -> Draft202012Validator:
    """A JSON Schema check of one of the document's schemas, formats included (date-time, uuid)."""
    root = {"$ref": ref, "components": document["components"]}
    return Draft202012Validator(root, format_checker=Draft202012Validator.FORMAT_CHECKER)


def operation(document: dict) -> dict:
    return document["paths"][RUNS_URL]["post"]


def answer_checker(document: dict, status: int) -> Draft202012Validator:
    schema = operation(document)["responses"][str(status)]["content"]["application/json"]
    return checker(document, schema["schema"]["$ref"])


def body_checker(document: dict) -> Draft202012Validator:
    schema = operation(document)["requestBody"]["content"]["application/json"]["schema"]
    return checker(document, schema["$ref"])


def schema_errors(validator: Draft202012Validator, instance) -> list[str]:
    return [error.message for error in validator.iter_errors(instance)]


# The document.


@pytest.mark.django_db
def test_the_document_is_valid_openapi_3(client):
    document = openapi_document(client)

    validate_openapi(document)  # raises on an invalid document
    assert document["openapi"].startswith("3.")


@pytest.mark.django_db
def test_the_document_describes_the_body_the_token_and_every_answer(client):
    document = openapi_document(client)
    runs = operation(document)
    body = document["components"]["schemas"]["DetectionRun"]

    assert runs["requestBody"]["required"] is True
    assert set(body["properties"]) == set(KNOWN_FIELDS)
    assert body["required"] == list(REQUIRED_FIELDS)
    assert body["additionalProperties"] is False
    assert "exactly one of detection_id or detection_name" in body["description"]
    properties = body["properties"]
    assert properties["match_count"]["type"] == "integer"
    assert properties["match_count"]["minimum"] == 0
    assert properties["ran_at"]["format"] == "date-time"
    assert properties["run_type"]["enum"] == ["SCHEDULED", "MANUAL"]
    assert {"maxLength": 8192, "type": "string"} in properties["replay_link"]["anyOf"]
    assert {"format": "uuid", "type": "string"} in properties["detection_id"]["anyOf"]

    [requirement] = runs["security"]
    [scheme] = requirement
    bearer = document["components"]["securitySchemes"][scheme]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert set(runs["responses"]) == {
        "200",
        "201",
        "400",
        "401",
        "403",
        "404",
        "411",
        "413",
        "503",
    }
    assert "WWW-Authenticate" in runs["responses"]["401"]["headers"]
    assert "Retry-After" in runs["responses"]["503"]["headers"]


def test_the_docs_example_is_the_readmes():
    assert readme_example() == EXAMPLE_BODY


# Real requests against the document's schemas.


@pytest.mark.django_db
def test_the_readme_example_agrees_with_the_document_and_the_live_api(client, token, detection):
    document = openapi_document(client)
    example = readme_example()
    assert example["detection_name"] == DETECTION_NAME

    assert schema_errors(body_checker(document), example) == []
    created = post_run(client, example, token=token)
    repeated = post_run(client, example, token=token)

    assert created.status_code == 201
    assert schema_errors(answer_checker(document, 201), created.json()) == []
    assert created.json()["outcome"] == "MATCHED"
    assert repeated.status_code == 200
    assert schema_errors(answer_checker(document, 200), repeated.json()) == []
    assert repeated.json() == created.json()


@pytest.mark.parametrize(
    "changes",
    [
        {"run_id": ...},
        {"run_id": "r" * 256},
        {"run_type": "scheduled"},
        {"match_count": -1},
        {"match_count": "5"},
        {"match_count": True},
        {"ran_at": "yesterday"},
        {"match_exhaustiveness": "DONE"},
        {"errors": [1]},
        {"replay_link": "https://siem.example.com/r?q=" + "a" * 8192},
        {"match_cnt": 5},
    ],
)
@pytest.mark.django_db
def test_a_body_the_schema_refuses_the_api_refuses_with_the_error_map(
    client, token, detection, changes
):
    document = openapi_document(client)
    body = run_body(**changes)

    assert schema_errors(body_checker(document), body) != []
    response = post_run(client, body, token=token)

    assert response.status_code == 400
    assert schema_errors(answer_checker(document, 400), response.json()) == []


@pytest.mark.django_db
def test_every_refusal_answer_has_the_documented_shape(client, token, detection):
    document = openapi_document(client)
    unknown = post_run(client, run_body(detection_name="Nope"), token=token)
    no_token = post_run(client, run_body(), token=None)
    too_large = post_run(client, json.dumps(run_body(errors=["x" * MAX_BODY_BYTES])), token=token)
    not_json = post_run(client, "{not json", token=token)

    statuses = [r.status_code for r in (unknown, no_token, too_large, not_json)]
    assert statuses == [404, 401, 413, 400]
    for response in (unknown, no_token, too_large, not_json):
        assert schema_errors(answer_checker(document, response.status_code), response.json()) == []


@pytest.mark.django_db
def test_the_command_refuses_a_body_in_the_apis_words(client, token, detection):
    body = run_body(match_cnt=5, match_count=-1)
    api_errors = post_run(client, body, token=token).json()["errors"]

    with pytest.raises(CommandError) as refused:
        call_command("record_detection_run", stdin=io.StringIO(json.dumps(body)))

    lines = str(refused.value).splitlines()[1:]
    assert lines == [f"  {field}: {' '.join(messages)}" for field, messages in api_errors.items()]


# The docs page.


class _Links(HTMLParser):
    """Every URL the page loads: src and href attributes."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


@pytest.mark.django_db
def test_the_docs_page_loads_only_this_sites_static_files(client):
    response = client.get(DOCS_URL)  # no login: the document holds nothing secret

    assert response.status_code == 200
    page = response.content.decode()
    links = _Links()
    links.feed(page)
    assert links.urls, "the page loads no scripts or styles"
    assert all(url.startswith("/static/") for url in links.urls), links.urls
    assert "://" not in page and "cdn" not in page.lower()
    for url in links.urls:
        assert finders.find(url.removeprefix("/static/")), f"{url} is not among the static files"
    assert '"url": "/api/v1/openapi.json"' in page


@pytest.mark.django_db
def test_the_document_is_readable_without_login_and_other_api_paths_are_404(client):
    assert client.get(OPENAPI_URL).status_code == 200
    assert client.get("/api/v1/no-such-thing").status_code == 404
