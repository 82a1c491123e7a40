"""The sample alert rules, project/prometheus/alerts.yml: valid; on what /metrics exports."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.factories import make_destination, queue_event
from tests.support.routing_keys import ROUTING_KEY
from tests.support.scrape import scrape

RULES_DIR = Path(__file__).resolve().parents[2] / "project" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULES_TESTS = RULES_DIR / "alerts_test.yml"
# A metric name with its label matchers, if any: detection_destinations_queue{status="pending"}.
SELECTOR = re.compile(r"(?P<name>detection_destinations_\w+)(?:\{(?P<matchers>[^}]*)\})?")
MATCHER = re.compile(r'(?P<label>\w+)\s*(?P<op>=~|!~|!=|=)\s*"(?P<value>[^"]*)"')


def rules() -> list[dict]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_the_rules_are_valid_and_fire_as_their_unit_tests_say():
    """promtool's own check and unit tests when promtool is installed (.ci/run installs it)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        # No promtool here: the rules are still read and checked, never skipped.
        for rule in rules():
            assert set(rule) >= {"alert", "expr", "labels", "annotations"}, rule
            assert rule["labels"]["severity"] in {"critical", "warning"}
            assert rule["annotations"]["summary"]
            assert SELECTOR.search(rule["expr"]), rule["expr"]
        return
    for command in (["check", "rules", RULES.name], ["test", "rules", RULES_TESTS.name]):
        result = subprocess.run(
            [promtool, *command], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout


def test_there_are_the_three_alerts():
    assert [rule["alert"] for rule in rules()] == [
        "DetectionDestinationFailing",
        "DetectionDestinationsQueueBackingUp",
        "DetectionDestinationsOldestPendingTooOld",
    ]


@pytest.mark.django_db
def test_every_expression_names_only_metrics_and_labels_that_metrics_exports(client):
    queue_event(make_destination("SecOps on-call", ROUTING_KEY), "incident-1")
    scraped = scrape(client)
    exported: dict[str, dict[str, set[str]]] = {}
    for sample, labels in scraped:
        for name in {sample, sample.removesuffix("_total")}:
            for label, value in labels:
                exported.setdefault(name, {}).setdefault(label, set()).add(value)
            exported.setdefault(name, {})

    for rule in rules():
        selectors = list(SELECTOR.finditer(rule["expr"]))
        assert selectors, rule["expr"]
        for selector in selectors:
            name = selector["name"]
            assert name in exported, f"{rule['alert']}: /metrics exports no {name}"
            for matcher in MATCHER.finditer(selector["matchers"] or ""):
                values = exported[name].get(matcher["label"])
                assert values is not None, f"{rule['alert']}: {name} has no {matcher['label']}"
                if matcher["op"] in ("=", "!="):
                    assert matcher["value"] in values, (rule["alert"], matcher.group())
