"""No routing key leaks: not in pages, API answers, stored rows, dumps, reprs, errors or logs."""

# The logs are guarded for every test of the suite by tests/support/leak_guard.py; the first test
# here proves that guard really fails a test that logs a key. The others put real keys through every
# path (deliveries, failures, test alerts, a PagerDuty that echoes the key back) and then read
# everything a person or another program could see.

import html
import io
import json
import pickle
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest
from cryptography.fernet import Fernet
from django.contrib import admin
from django.core.management import call_command
from django.db import connection
from django.urls import reverse

from destinations.delivery.attempts import UnreadableRoutingKey
from destinations.forms import DestinationForm
from destinations.keys.encryption import DecryptionError, decrypt
from destinations.models import Delivery, DeliveryAttempt, Destination
from destinations.pagerduty.client import PagerDutyClient
from destinations.pagerduty.errors import PagerDutyError
from destinations.pagerduty.events import serialize_event
from detections.tokens import create_api_token
from tests.support.admin_pages import destination_form_data
from tests.support.audit_trail import FERNET_PREFIX, stored_trail_text
from tests.support.factories import drain, make_destination, make_detection, record_run
from tests.support.fake_pagerduty import Fault
from tests.support.leak_guard import find_secrets, register_secret
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

ROOT = Path(__file__).resolve().parents[2]
# A key typed into the form but never stored, one a rotation brings in, one the admin stores.
TYPED_KEY = "Tq4Wd8Lm2Xc6Vb0Nz3Hs7Jk1Pf5Gr9Ya"
ROTATED_KEY = "Uo3Ie5Aw7Sy9Dx1Fc2Gv4Hb6Jn8Km0Lq"
EDITED_KEY = "Pe6Rt8Yu0Io2Pa4Sd6Fg8Hj0Kl2Zx4Cv"
ALL_KEYS = {ROUTING_KEY, OTHER_ROUTING_KEY, TYPED_KEY, ROTATED_KEY, EDITED_KEY}

pytestmark = pytest.mark.django_db(transaction=True)


class Surfaces:
    """Counts what was read and names any place a key showed up."""

    def __init__(self) -> None:
        self.checked = 0
        self.leaks: list[str] = []

    def check(self, where: str, text: str) -> None:
        self.checked += 1
        if find_secrets(text, ALL_KEYS):
            self.leaks.append(where)

    def assert_clean(self, what: str) -> None:
        assert self.leaks == [], f"a routing key showed in: {self.leaks}"
        print(f"\n{what}: {self.checked} surfaces read, {len(self.leaks)} leaks")


@pytest.fixture(autouse=True)
def guarded_keys():
    for key in ALL_KEYS:
        register_secret(key)


def test_the_log_guard_fails_a_test_that_logs_a_key(tmp_path):
    (tmp_path / "test_guarded.py").write_text(
        textwrap.dedent(
            f"""
            import logging

            KEY = {ROUTING_KEY!r}

            def test_logs_the_key():
                logging.getLogger("destinations.delivery").debug("sending with %s", KEY)

            def test_logs_a_traceback_holding_an_altered_key():
                try:
                    raise ValueError("refused " + "00" + KEY[2:])
                except ValueError:
                    logging.getLogger("destinations.worker").exception("failed")

            def test_logs_only_the_masked_key():
                logging.getLogger("destinations.delivery").warning("key ••••%s", KEY[-4:])
            """
        )
    )
    plugins = ["-p", "tests.support.leak_guard", "-p", "no:django", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", *plugins, "-q", "-rE", str(tmp_path / "test_guarded.py")],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    report = result.stdout
    assert result.returncode == 1, report
    assert "ERROR at teardown of test_logs_the_key" in report, report
    assert "ERROR at teardown of test_logs_a_traceback_holding_an_altered_key" in report
    assert "test_logs_only_the_masked_key" not in report.split("short test summary")[-1]
    assert "A routing key appeared in the logs" in report
    assert "3 passed, 2 errors" in report


def every_admin_url(surfaces_objects: dict) -> list[str]:
    """Every GET-able admin page: the site's own and each model's, with a real object's id."""
    urls = [
        "/admin/",
        "/admin/destinations/",
        "/admin/detections/",
        "/admin/auth/",
        "/admin/password_change/",
        "/admin/jsi18n/",
        "/admin/destinations/health/",
    ]
    admin.autodiscover()  # the model admins, registered when the URLconf is first read
    for model, model_admin in admin.site._registry.items():
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        obj = surfaces_objects.get(model) or model._default_manager.order_by("pk").first()
        for pattern in model_admin.get_urls():
            route = str(pattern.pattern)
            if "<" in route:
                if obj is None:
                    continue
                for parameter in ("<path:object_id>", "<id>"):
                    route = route.replace(parameter, quote(str(obj.pk)))
            urls.append(base + route)
        for query in ("?q=on-call", "?status__exact=failed", "?o=1", "?all="):
            urls.append(base + query)
    return urls


@pytest.mark.slow  # crawls every admin page
def test_no_page_answer_row_dump_or_command_output_holds_a_key(
    admin_client, destination, fake_pagerduty, monkeypatch, settings
):
    surfaces = Surfaces()
    other = make_destination("Platform on-call", OTHER_ROUTING_KEY, component="db")
    logins = make_detection("Suspicious Login Attempts", destination)
    exports = make_detection("Mass Data Export", other)
    token = create_api_token(name="engine")
    api = {"Authorization": f"Bearer {token}"}

    def run_body(detection, run_id: str, errors=()) -> dict:
        return {
            "detection_name": detection.name,
            "run_id": run_id,
            "run_type": "SCHEDULED",
            "match_count": 7,
            "ran_at": "2026-05-01T12:00:00Z",
            "range_start": "2026-05-01T11:00:00Z",
            "range_end": "2026-05-01T12:00:00Z",
            "errors": list(errors),
        }

    # PagerDuty (or a proxy before it) echoes the key it was sent in a refusal, a redirect, a
    # server error and an acceptance; each run meets one of them.
    echoes = [
        (
            logins,
            Fault.status(
                400,
                body={
                    "status": "invalid event",
                    "message": f"Invalid routing key {ROUTING_KEY}",
                    "errors": [f"routing_key {ROUTING_KEY} is not an integration key"],
                },
            ),
        ),
        (
            logins,
            Fault.status(
                302, headers={"Location": f"https://elsewhere.example/?key={ROUTING_KEY}"}
            ),
        ),
        (exports, Fault.status(500, body=f"<h1>upstream saw {OTHER_ROUTING_KEY}</h1>")),
        (
            logins,
            Fault.status(
                202,
                body={
                    "status": "success",
                    "message": f"queued for {ROUTING_KEY}",
                    "dedup_key": "x",
                },
            ),
        ),
    ]
    for n, (detection, echo) in enumerate(echoes):
        fake_pagerduty.inject(echo)
        response = admin_client.post(
            "/api/v1/detection-runs",
            json.dumps(run_body(detection, f"run-{n}", ["index missing"] if n == 2 else [])),
            "application/json",
            headers=api,
        )
        assert response.status_code == 201
        surfaces.check("API 201", response.content.decode() + str(response.headers))
        moment = None
        for _ in range(3):
            drain(at=moment)
            pending = Delivery.objects.filter(status="pending").order_by("next_attempt_at")
            moment = pending[0].next_attempt_at if pending else None
    valid = run_body(logins, "run-3")
    for body, headers in [
        ({"run_id": "run-0"}, api),  # 400
        (valid, api),  # 200 repeat
        ({**valid, "run_id": "x", "detection_name": "nope"}, api),  # 404
        (valid, {"Authorization": f"Bearer {ROUTING_KEY}"}),  # 401
    ]:
        response = admin_client.post(
            "/api/v1/detection-runs", json.dumps(body), "application/json", headers=headers
        )
        assert response.status_code in (200, 400, 401, 404)
        surfaces.check(f"API {response.status_code}", response.content.decode())
    assert Delivery.objects.filter(status="failed").exists()
    assert Delivery.objects.filter(status="delivered").exists()

    # Test alerts from the change-page button (accepted, then refused) and the list action.
    button = reverse("admin:destinations_destination_test_alert", args=[destination.pk])
    page = admin_client.post(button, follow=True)
    assert "accepted by PagerDuty" in page.content.decode()
    surfaces.check("test alert accepted", page.content.decode())
    fake_pagerduty.inject(
        Fault.status(400, body={"message": f"bad key {ROUTING_KEY}", "errors": [ROUTING_KEY]})
    )
    page = admin_client.post(button, follow=True).content.decode()
    assert "bad key ••••" + ROUTING_KEY[-4:] in page  # PagerDuty's answer, the key masked
    surfaces.check("test alert refused with the key echoed", page)
    fake_pagerduty.refuse_key(ROUTING_KEY, 404)
    page = admin_client.post(button, {"resolve": "1"}, follow=True)
    assert "failed" in page.content.decode()
    surfaces.check("test alert refused", page.content.decode())
    page = admin_client.post(
        reverse("admin:destinations_destination_changelist"),
        {"action": "send_test_alert", "_selected_action": [destination.pk, other.pk]},
        follow=True,
    )
    surfaces.check("test alert action", page.content.decode())

    # A key typed into a form that is then refused is not rendered back.
    page = admin_client.post(
        reverse("admin:destinations_destination_change", args=[other.pk]),
        {"name": other.name, "region": "us", "routing_key": TYPED_KEY, "timeout_seconds": "0"},
    )
    assert page.status_code == 200 and "errorlist" in page.content.decode()
    surfaces.check("refused edit", page.content.decode())
    surfaces.check("bound form", str(DestinationForm(data={"routing_key": TYPED_KEY})))

    # The commands an operator runs.
    for name, args, stdin in [
        ("send_test_alert", [other.name, "--resolve"], None),
        ("rotate_routing_key", [other.name], ROTATED_KEY + "\n"),
        ("rotate_encryption_key", ["--check"], None),
    ]:
        out, err = io.StringIO(), io.StringIO()
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        try:
            call_command(name, *args, stdout=out, stderr=err)
        except (SystemExit, Exception) as error:  # a refusal still prints; its text counts too
            err.write(str(error))
        surfaces.check(f"manage.py {name}", out.getvalue() + err.getvalue())
    assert Destination.objects.get(pk=other.pk).routing_key == ROTATED_KEY

    # A key the admin stores through the form, then re-encryption under a new first key: both
    # are kept in the audit trail, which shows and stores neither key nor token.
    page = admin_client.post(
        reverse("admin:destinations_destination_change", args=[other.pk]),
        destination_form_data(name=other.name, routing_key=EDITED_KEY, component="db"),
    )
    assert page.status_code == 302
    settings.FIELD_ENCRYPTION_KEYS = [
        Fernet.generate_key().decode(),
        *settings.FIELD_ENCRYPTION_KEYS,
    ]
    call_command("rotate_encryption_key", stdout=io.StringIO())
    history = reverse("admin:destinations_destination_history", args=[other.pk])
    page = admin_client.get(history).content.decode()
    assert "key changed (••••" + EDITED_KEY[-4:] + ")" in html.unescape(page)
    assert "key re-encrypted" in page
    surfaces.check("the audit trail of a re-keyed destination", page)

    # Every admin page, as a superuser sees it, and the public health answer.
    delivery = Delivery.objects.filter(status="failed").first()
    urls = every_admin_url({Delivery: delivery})
    for url in urls:
        response = admin_client.get(url, follow=True)
        assert response.status_code < 500, url
        surfaces.check(url, response.content.decode(errors="replace") + str(response.headers))
    assert len(urls) > 50
    print(f"\n{len(urls)} admin URLs crawled")
    listing = admin_client.get(reverse("admin:destinations_destination_changelist"))
    assert "••••" + ROUTING_KEY[-4:] in listing.content.decode()  # the masked form is shown
    surfaces.check("/healthz", admin_client.get("/healthz").content.decode())

    # What is stored: the delivery log, the attempts, the raw key column, a full dump.
    for row in Delivery.objects.values():
        surfaces.check(f"delivery {row['id']}", json.dumps(row, default=str, ensure_ascii=False))
    for row in DeliveryAttempt.objects.values():
        surfaces.check(f"attempt {row['id']}", json.dumps(row, default=str, ensure_ascii=False))
    with connection.cursor() as cursor:
        cursor.execute("SELECT routing_key FROM destinations_destination")
        tokens = [token for (token,) in cursor.fetchall()]
    assert tokens and all(token.startswith("gAAAAA") for token in tokens)  # Fernet tokens only
    surfaces.check("routing_key column", "\n".join(tokens))
    trail = stored_trail_text()
    assert FERNET_PREFIX not in trail  # the trail holds no token either, old or new
    surfaces.check("audit trail tables", trail)
    for label in ("destinations", None):
        out = io.StringIO()
        call_command("dumpdata", *([label] if label else []), stdout=out)
        surfaces.check(f"dumpdata {label or 'everything'}", out.getvalue())
    assert '"routing_key": "gAAAAA' in out.getvalue()  # the encrypted field dumps as a token

    # The echoed key was masked before anything was kept.
    refused = Delivery.objects.filter(last_status_code=400).first()
    assert refused is not None and "••••" + ROUTING_KEY[-4:] in refused.last_error
    surfaces.assert_clean("pages, answers, rows, dumps and command output")


def test_models_reprs_and_every_client_error_hold_no_key(destination, fake_pagerduty):
    surfaces = Surfaces()
    detection = make_detection("Suspicious Login Attempts", destination)
    record_run(detection, "run-1")
    drain()
    for model in (Destination, Delivery, DeliveryAttempt):
        for obj in model.objects.all():
            surfaces.check(f"{model.__name__} repr", repr(obj) + str(obj))
    for obj in Destination.objects.all():
        # Even the instance's own state (it holds the decrypted key) is never what repr shows.
        assert obj.routing_key == ROUTING_KEY
        surfaces.check("Destination repr after reading the key", repr(obj) + str(obj))

    echo = {"message": f"key {ROUTING_KEY} refused", "errors": [ROUTING_KEY, f"bad {ROUTING_KEY}"]}
    faults = {
        "400 echoing the key": Fault.status(400, body={"status": "invalid event", **echo}),
        "401": Fault.status(401, body=echo),
        "403": Fault.status(403),
        "404": Fault.status(404, body=echo),
        "413": Fault.status(413, body=f"too large for {ROUTING_KEY}"),
        "302 to a URL with the key": Fault.status(
            302, headers={"Location": f"https://x.example/{ROUTING_KEY}"}
        ),
        "429": Fault.status(429, headers={"Retry-After": "5"}, body=echo),
        "500 echoing the key": Fault.status(500, body=f"<pre>{ROUTING_KEY}</pre>"),
        "503": Fault.status(503),
        "connection reset": Fault.reset(),
        "closed without an answer": Fault.drop(),
        "timeout": Fault.delay(1.0),
    }
    client = PagerDutyClient()
    event = {"event_action": "trigger", "dedup_key": "k", "payload": {"summary": "s"}}
    body = serialize_event(event, routing_key=ROUTING_KEY)
    errors: list[BaseException] = []
    for name, fault in faults.items():
        fake_pagerduty.inject(fault)
        with pytest.raises(PagerDutyError) as caught:
            client.send(body, routing_key=ROUTING_KEY, url=fake_pagerduty.url, timeout=0.3)
        errors.append(caught.value)
        assert caught.value.__context__ is None and caught.value.__cause__ is None, name
    fake_pagerduty.stop()
    with pytest.raises(PagerDutyError) as caught:
        client.send(body, routing_key=ROUTING_KEY, url=fake_pagerduty.url, timeout=0.3)
    errors.append(caught.value)
    errors.append(UnreadableRoutingKey())
    with pytest.raises(DecryptionError) as caught:
        decrypt("gAAAAA" + ROUTING_KEY)
    errors.append(caught.value)
    for error in errors:
        text = "\n".join(
            [
                repr(error),
                str(error),
                "".join(traceback.format_exception(error)),
                repr(vars(error)),
                pickle.dumps(error).decode("latin-1"),
            ]
        )
        surfaces.check(type(error).__name__, text)
    assert {type(error).__name__ for error in errors} >= {
        "EventRejected",
        "KeyRejected",
        "RequestRejected",
        "RateLimited",
        "ServerError",
        "Unreachable",
        "Timeout",
        "UnreadableRoutingKey",
        "DecryptionError",
    }
    surfaces.assert_clean("models, reprs and exceptions")
