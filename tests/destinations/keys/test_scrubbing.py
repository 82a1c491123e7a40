"""An answer that echoes the key in a distorted form is masked before it is stored or shown."""

import io
import json
import time

import pytest
import requests
from django.core.management import CommandError, call_command
from django.urls import reverse
from requests.adapters import HTTPAdapter

from destinations.keys.routing import KEY_FRAGMENT_MIN, scrub_routing_key
from destinations.models import Delivery, DeliveryAttempt
from destinations.pagerduty.client import PagerDutyClient, _Scrubber
from destinations.pagerduty.errors import PagerDutyError
from tests.support.factories import drain, make_destination, queue_event
from tests.support.fake_pagerduty import Fault
from tests.support.leak_guard import find_secrets
from tests.support.routing_keys import ROUTING_KEY

KEY = ROUTING_KEY
MASKED = "••••" + KEY[-4:]
URL = "http://127.0.0.1:9/v2/enqueue"  # the tests' PAGERDUTY_EVENTS_URL


def _escaped(text: str, *, every: int = 1, upper: bool = False) -> str:
    """JSON's \\uXXXX escape of every `every`-th character, the others left as they are."""
    code = "\\u{:04X}" if upper else "\\u{:04x}"
    return "".join(code.format(ord(c)) if i % every == 0 else c for i, c in enumerate(text))


# Each form as it stands in the raw text of a JSON answer (valid inside a JSON string).
FORMS = {
    "lower case": KEY.lower(),
    "upper case": KEY.upper(),
    "swapped case": KEY.swapcase(),
    "JSON-escaped": _escaped(KEY),
    "escaped, upper-case hex": _escaped(KEY, upper=True),
    "half escaped, half plain": _escaped(KEY.lower(), every=2),
    "spaced out": " ".join(KEY),
    "dashed": "-".join(KEY),
    "comma and space": ", ".join(KEY),
    "one per line (JSON \\n)": "\\n".join(KEY),
    "last character missing": KEY[:-1],
    "last four missing": KEY[:-4],
    "first two missing": "00" + KEY[2:],
    "a middle run": "#" + KEY[8 : 8 + KEY_FRAGMENT_MIN + 2] + "#",
}


def echoing_answer(form: str, status: int = 400) -> Fault:
    """A proxy's answer that echoes the key in one form, in its message, errors and body."""
    body = (
        '{"status":"invalid event","message":"routing_key ' + form + ' is not valid",'
        '"errors":["routing_key ' + form + '", {"routing_key": "' + form + '"}]}'
    )
    json.loads(body)  # the forms are written to be valid JSON
    return Fault.status(status, body=body)


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_scrubbing_masks_the_form_and_keeps_the_rest(form):
    text = f"PagerDuty said: key {form} refused."
    scrubbed = _Scrubber(routing_key=KEY, url=URL)(text)
    assert find_secrets(scrubbed) == []
    assert MASKED in scrubbed
    assert scrubbed.startswith("PagerDuty said: key ")
    assert scrubbed.endswith(" refused.")


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_scrubbing_masks_the_form_once_json_decodes_it(form):
    decoded = json.loads(f'"{form}"')
    assert find_secrets(_Scrubber(routing_key=KEY, url=URL)(decoded)) == []


def test_text_without_a_long_enough_run_is_left_alone():
    # Shorter runs than KEY_FRAGMENT_MIN stay (with the mask's last four, over 100 bits unknown).
    text = f"dedup {KEY[: KEY_FRAGMENT_MIN - 1]} and Event processed, as usual."
    assert scrub_routing_key(text, KEY) == text
    assert scrub_routing_key("", KEY) == ""
    assert scrub_routing_key("anything", "") == "anything"


def test_the_url_secrets_are_still_masked():
    scrub = _Scrubber(routing_key=KEY, url="https://user:hunter2@proxy.example/v2?token=abc123")
    assert scrub("auth hunter2 and token=abc123") == "auth •••• and ••••"


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(lambda: "Event processed. " * 4000, id="no key: the cheap test decides"),
        pytest.param(lambda: (KEY[:11] + " ") * 5000 + KEY, id="near misses, then the key"),
        pytest.param(lambda: (" ".join(KEY[:11]) + " ") * 2800 + KEY, id="spaced near misses"),
        pytest.param(lambda: _escaped(KEY[:11]) * 900 + " " + KEY.lower(), id="escaped misses"),
        pytest.param(lambda: " ".join(FORMS.values()) * 90, id="every form, over and over"),
    ],
)
def test_a_64_kb_answer_is_scrubbed_quickly(answer):
    text = answer()[: 64 * 1024]
    scrub = _Scrubber(routing_key=KEY, url=URL)
    scrub(KEY)  # the key's pattern is built once; this measures the scan
    started = time.perf_counter()
    scrubbed = scrub(text)
    elapsed = time.perf_counter() - started
    assert find_secrets(scrubbed) == []
    # Linear: about 0.1 s here. Backtracking on these inputs would take minutes.
    assert elapsed < 2.0, f"{elapsed:.2f} s"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_the_worker_stores_and_shows_no_form_of_the_key(form, fake_pagerduty, admin_client):
    destination = make_destination("SecOps on-call", KEY)
    delivery = queue_event(destination, "k-1")
    fake_pagerduty.inject(echoing_answer(form))
    drain()

    delivery.refresh_from_db()
    attempt = DeliveryAttempt.objects.get()
    assert delivery.last_status_code == 400
    stored = {
        "pagerduty_message": delivery.pagerduty_message,
        "pagerduty_errors": json.dumps(delivery.pagerduty_errors),
        "last_error": delivery.last_error,
        "response_excerpt": attempt.response_excerpt,
        "attempt error": attempt.error,
    }
    leaks = [where for where, text in stored.items() if find_secrets(text)]
    assert leaks == []
    assert MASKED in attempt.response_excerpt  # masked in place, not dropped
    assert MASKED in delivery.last_error

    pages = {
        "delivery page": reverse("admin:destinations_delivery_change", args=[delivery.pk]),
        "delivery log": reverse("admin:destinations_delivery_changelist"),
        "health page": reverse("admin:destinations_health"),
    }
    for where, url in pages.items():
        response = admin_client.get(url)
        assert response.status_code == 200
        assert find_secrets(response.content.decode()) == [], where
    assert MASKED in admin_client.get(pages["delivery page"]).content.decode()

    dumped = call_command_output("dumpdata", "destinations")
    assert find_secrets(dumped) == []


@pytest.mark.django_db(transaction=True)
def test_a_redirect_naming_the_key_is_masked(fake_pagerduty):
    destination = make_destination("SecOps on-call", KEY)
    delivery = queue_event(destination, "k-1")
    location = "https://proxy.example/retry?key=" + " ".join(KEY.lower())
    fake_pagerduty.inject(Fault.status(302, headers={"Location": location}, body=""))
    drain()
    delivery.refresh_from_db()
    assert "redirect to https://proxy.example/retry?key=" + MASKED in delivery.last_error
    assert find_secrets(delivery.last_error) == []


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_a_transport_error_naming_the_key_is_masked(form):
    class EchoingProxy(HTTPAdapter):
        def send(self, *args, **kwargs):
            raise requests.ConnectionError(f"proxy refused routing_key {form}")

    client = PagerDutyClient(adapter=EchoingProxy())
    with pytest.raises(PagerDutyError) as failed:
        client.send(b"{}", routing_key=KEY, url=URL, timeout=5)
    assert MASKED in str(failed.value)
    assert find_secrets(str(failed.value)) == []


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_a_test_alert_shows_no_form_of_the_key(form, destination, fake_pagerduty, admin_client):
    fake_pagerduty.inject(echoing_answer(form))
    response = admin_client.post(
        reverse("admin:destinations_destination_test_alert", args=[destination.pk]), follow=True
    )
    [message] = [str(message) for message in response.context["messages"]]
    assert "failed: PagerDuty answered 400" in message
    assert MASKED in message
    assert find_secrets(message) == []
    assert find_secrets(response.content.decode()) == []

    fake_pagerduty.inject(echoing_answer(form))
    with pytest.raises(CommandError) as failed:
        call_command("send_test_alert", destination.name)
    assert find_secrets(str(failed.value)) == []

    for attempt in DeliveryAttempt.objects.all():
        assert find_secrets(attempt.response_excerpt + attempt.error) == []
    for delivery in Delivery.objects.all():
        assert find_secrets(delivery.last_error + delivery.pagerduty_message) == []


def call_command_output(*args) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.parametrize("form", FORMS.values(), ids=FORMS.keys())
def test_the_log_guard_catches_every_form(form):
    import logging

    from tests.support.leak_guard import LeakHandler

    assert find_secrets(f"refused: {form}.") == [MASKED]
    assert find_secrets(f"refused: {json.loads(chr(34) + form + chr(34))}.") == [MASKED]
    handler = LeakHandler()
    record = logging.LogRecord(
        "destinations", logging.WARNING, __file__, 1, "echo %s", (form,), None
    )
    handler.emit(record)
    assert len(handler.leaks) == 1
    assert find_secrets(_Scrubber(routing_key=KEY, url=URL)(f"refused: {form}.")) == []


def test_the_log_guard_lets_the_masked_key_through():
    assert find_secrets(f"key {MASKED} of SecOps on-call, dedup {KEY[:11]}") == []
