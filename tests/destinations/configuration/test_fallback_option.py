"""The fallback option: a destination's name, resolved once every destination in the file exists."""

import json

import pytest

from destinations.models import Destination
from tests.destinations.configuration.test_apply_config import apply, plan_lines, refusal

pytestmark = pytest.mark.django_db


def key_source(monkeypatch, name: str, key: str) -> dict:
    monkeypatch.setenv(name, key)
    return {"is_secret": True, "from_env": name}


def destinations(monkeypatch, **fallbacks) -> str:
    records = [
        {
            "name": name,
            "routing_key": key_source(monkeypatch, f"KEY_{name}", name * 32),
            **({"fallback": {"value": target}} if target else {}),
        }
        for name, target in fallbacks.items()
    ]
    return json.dumps({"destinations": records, "detections": []})


def fallback_of(name: str) -> str | None:
    target = Destination.objects.get(name=name).fallback
    return None if target is None else target.name


def test_a_fallback_may_name_a_destination_later_in_the_file(monkeypatch):
    apply("-", stdin=destinations(monkeypatch, A="B", B=None))

    assert fallback_of("A") == "B" and fallback_of("B") is None


def test_swapping_a_fallback_is_not_mistaken_for_a_loop(monkeypatch):
    apply("-", stdin=destinations(monkeypatch, A=None, B="A"))

    output = apply("-", stdin=destinations(monkeypatch, A="B", B=None))

    assert plan_lines(output) == [
        '~ update destination "A": fallback null → "B"',
        '~ update destination "B": fallback "A" → null',
    ]
    assert fallback_of("A") == "B" and fallback_of("B") is None


def test_a_loop_and_an_unknown_fallback_are_refused_by_path(monkeypatch):
    message = str(refusal("-", stdin=destinations(monkeypatch, A="B", B="A", C="Nowhere")))

    assert "destinations[1].fallback: That would be a loop" in message
    assert "destinations[2].fallback: no destination is named “Nowhere”." in message
    assert not Destination.objects.exists()


def test_falling_back_to_itself_is_refused(monkeypatch):
    message = str(refusal("-", stdin=destinations(monkeypatch, A="A")))

    assert "destinations[0].fallback:" in message
    assert not Destination.objects.exists()


def test_an_unchanged_fallback_keeps_updated_at(monkeypatch):
    apply("-", stdin=destinations(monkeypatch, A="B", B=None))
    stamp = Destination.objects.get(name="A").updated_at

    output = apply("-", stdin=destinations(monkeypatch, A="B", B=None))

    assert all(line.startswith("= unchanged") for line in plan_lines(output))
    assert Destination.objects.get(name="A").updated_at == stamp and fallback_of("A") == "B"
