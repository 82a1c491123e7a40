"""export_config and apply_config as an operator keeping the configuration in Git meets them."""

import io
import json
import re

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError

from destinations.configuration.options import (
    DESTINATION_OPTIONS,
    DETECTION_VALUES,
    ROUTING_KEY_OPTION,
)
from destinations.forms import DestinationForm
from destinations.models import Destination
from detections.forms import DetectionForm
from detections.models import Detection
from tests.support.factories import make_destination, make_detection
from tests.support.leak_guard import find_secrets
from tests.support.routing_keys import MASKED_KEY, OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db

# A file in the seed's option form: two destinations, three detections.
SITE = """
destinations:
  - name: SecOps on-call
    routing_key: {is_secret: true, from_env: SECOPS_ROUTING_KEY}
    severity: {value: critical}
    component: {value: auth}
    group: {value: prod}
    class: {value: security}
    custom_details: {value: {team: secops}}
    timeout: {value: 20}
  - name: Platform on-call
    routing_key: {is_secret: true, from_file: platform.key}
    region: {value: eu}
detections:
  - name: Suspicious Login Attempts
    description: Many failed logins from one address
    severity: HIGH
    match_operator: GREATER_THAN
    match_threshold: 10
    destinations: [SecOps on-call, Platform on-call]
  - name: Privilege escalation
    severity: CRITICAL
    match_operator: GREATER_THAN_OR_EQUAL
    match_threshold: 1
    match_eagerness: EXHAUSTIVE
    destinations: [SecOps on-call]
  - name: Quiet check
    enabled: false
"""


@pytest.fixture
def site(tmp_path, monkeypatch):
    """The site file on disk, with its keys in the environment and in a key file beside it."""
    monkeypatch.setenv("SECOPS_ROUTING_KEY", ROUTING_KEY)
    (tmp_path / "platform.key").write_text(OTHER_ROUTING_KEY + "\n")
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    return path


def apply(*args, stdin: str | None = None) -> str:
    out = io.StringIO()
    extra = {} if stdin is None else {"stdin": io.StringIO(stdin)}
    call_command("apply_config", *map(str, args), stdout=out, **extra)
    return out.getvalue()


def refusal(*args, stdin: str | None = None) -> CommandError:
    with pytest.raises(CommandError) as refused:
        apply(*args, stdin=stdin)
    return refused.value


def export(*args) -> str:
    out = io.StringIO()
    call_command("export_config", *args, stdout=out)
    return out.getvalue()


def plan_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line[:2] in ("+ ", "~ ", "= ", "- ")]


def edited(path, *replacements) -> str:
    text = path.read_text()
    for old, new in replacements:
        assert old in text
        text = text.replace(old, new)
    path.write_text(text)
    return str(path)


def stored() -> dict:
    """Every stored value the file can set, the keys included, to prove nothing changed."""
    return {
        "destinations": [
            (
                d.name,
                d.routing_key,
                d.updated_at,
                d.managed_by,
                *(o.read(d) for o in DESTINATION_OPTIONS),
            )
            for d in Destination.objects.order_by("name")
        ],
        "detections": [
            (
                d.name,
                d.severity,
                d.match_threshold,
                d.enabled,
                d.updated_at,
                d.managed_by,
                sorted(d.destinations.values_list("name", flat=True)),
            )
            for d in Detection.objects.order_by("name")
        ],
    }


# Creating and re-applying.


def test_a_file_in_the_seeds_form_creates_two_destinations_and_three_detections(site):
    output = apply(site)

    assert plan_lines(output) == [
        '+ create destination "SecOps on-call"',
        '+ create destination "Platform on-call"',
        '+ create detection "Suspicious Login Attempts"',
        '+ create detection "Privilege escalation"',
        '+ create detection "Quiet check"',
    ]
    secops = Destination.objects.get(name="SecOps on-call")
    assert secops.routing_key == ROUTING_KEY and secops.routing_key_rotated_at is not None
    assert (secops.severity_override, secops.component, secops.group, secops.event_class) == (
        "critical",
        "auth",
        "prod",
        "security",
    )
    assert (secops.custom_details, secops.timeout_seconds, secops.region) == (
        {"team": "secops"},
        20,
        "us",
    )
    platform = Destination.objects.get(name="Platform on-call")
    assert platform.routing_key == OTHER_ROUTING_KEY  # the key file's newline stripped
    assert (platform.region, platform.severity_override, platform.custom_details) == ("eu", "", {})
    logins = Detection.objects.get(name="Suspicious Login Attempts")
    assert set(logins.destinations.values_list("name", flat=True)) == {
        "SecOps on-call",
        "Platform on-call",
    }
    assert (logins.severity, logins.match_threshold, logins.enabled) == ("HIGH", 10, True)
    quiet = Detection.objects.get(name="Quiet check")
    assert (quiet.enabled, quiet.severity, quiet.destinations.count()) == (False, "HIGH", 0)
    assert {d.managed_by for d in Destination.objects.all()} == {str(site)}
    assert {d.managed_by for d in Detection.objects.all()} == {str(site)}
    assert ROUTING_KEY not in output and OTHER_ROUTING_KEY not in output


def test_the_second_apply_prints_only_unchanged_and_writes_nothing(site):
    apply(site)
    before = stored()

    output = apply(site)

    lines = plan_lines(output)
    assert len(lines) == 5 and all(line.startswith("= unchanged ") for line in lines)
    assert stored() == before  # not even updated_at moved


def test_an_edited_file_prints_one_tilde_line_per_changed_field(site, monkeypatch):
    apply(site)
    monkeypatch.setenv("SECOPS_ROUTING_KEY", "B" * 32)
    path = edited(
        site,
        ("component: {value: auth}", "component: {value: identity}"),
        ("timeout: {value: 20}", "timeout: {value: 45}"),
        ("match_threshold: 10", "match_threshold: 25"),
        ("destinations: [SecOps on-call, Platform on-call]", "destinations: [Platform on-call]"),
    )

    output = apply(path)

    assert plan_lines(output) == [
        '~ update destination "SecOps on-call": routing_key: changed',
        '~ update destination "SecOps on-call": component "auth" → "identity"',
        '~ update destination "SecOps on-call": timeout 20 → 45',
        '= unchanged destination "Platform on-call"',
        '~ update detection "Suspicious Login Attempts": match_threshold 10 → 25',
        '~ update detection "Suspicious Login Attempts": destinations '
        '["Platform on-call", "SecOps on-call"] → ["Platform on-call"]',
        '= unchanged detection "Privilege escalation"',
        '= unchanged detection "Quiet check"',
    ]
    secops = Destination.objects.get(name="SecOps on-call")
    assert (secops.component, secops.timeout_seconds, secops.routing_key) == (
        "identity",
        45,
        "B" * 32,
    )
    assert "B" * 32 not in output


def test_an_option_left_out_goes_back_to_its_default(site):
    apply(site)

    apply(edited(site, ("    group: {value: prod}\n", "")))

    assert Destination.objects.get(name="SecOps on-call").group == ""


def test_keep_the_stored_key_with_is_secret_alone(site):
    apply(site)

    output = apply(
        edited(site, ("{is_secret: true, from_env: SECOPS_ROUTING_KEY}", "{is_secret: true}"))
    )

    assert '= unchanged destination "SecOps on-call"' in output
    assert Destination.objects.get(name="SecOps on-call").routing_key == ROUTING_KEY


# --check and --dry-run.


def test_check_exits_0_when_the_database_matches_and_1_on_drift(site):
    with pytest.raises(CommandError) as drift:
        apply(site, "--check")
    assert drift.value.returncode == 1
    assert Destination.objects.count() == 0 and Detection.objects.count() == 0

    apply(site)
    output = apply(site, "--check")  # returns: exit 0
    assert "matches the database" in output

    Destination.objects.filter(name="Platform on-call").update(component="changed in the admin")
    with pytest.raises(CommandError) as drift:
        apply(site, "--check")
    assert drift.value.returncode == 1
    assert Destination.objects.get(name="Platform on-call").component == "changed in the admin"


def test_dry_run_prints_the_plan_and_changes_nothing(site):
    output = apply(site, "--dry-run")

    assert plan_lines(output)[0] == '+ create destination "SecOps on-call"'
    assert "Nothing was changed (dry run)" in output
    assert Destination.objects.count() == 0 and Detection.objects.count() == 0


# Refusals: nothing changes, every error is named by its path.


def test_a_bad_file_changes_nothing_and_names_the_path_of_every_error(site):
    apply(site)
    before = stored()
    bad = edited(
        site,
        ("severity: {value: critical}", "severity: {value: loud}"),
        ("custom_details: {value: {team: secops}}", "custom_details: {value: [secops]}"),
        ("region: {value: eu}", "region: {value: mars}\n    colour: {value: red}"),
        ("match_threshold: 10", "match_threshold: -1"),
        ("destinations: [SecOps on-call]", "destinations: [SecOps on-call, Nowhere]"),
        ("enabled: false", "enabled: maybe"),
    )

    message = str(refusal(bad))

    assert f"{bad} was refused (7 errors); nothing was changed" in message
    errors = re.findall(r"^  (\S+): (.*)$", message, re.MULTILINE)
    assert [path for path, _ in errors] == [
        "destinations[0].severity",
        "destinations[0].custom_details",
        "destinations[1].colour",
        "destinations[1].region",
        "detections[0].match_threshold",
        "detections[1].destinations[1]",
        "detections[2].enabled",
    ]
    said = dict(errors)
    assert "must be a JSON object" in said["destinations[0].custom_details"]
    assert "not one of the available choices" in said["destinations[1].region"]
    assert "greater than or equal to 0" in said["detections[0].match_threshold"]
    assert said["detections[1].destinations[1]"] == "no destination is named “Nowhere”."
    assert said["detections[2].enabled"] == "must be true or false."
    assert stored() == before


def test_a_new_destination_without_a_key_source_is_refused(site):
    message = str(
        refusal(edited(site, ("{is_secret: true, from_file: platform.key}", "{is_secret: true}")))
    )

    assert "destinations[1].routing_key: a new destination needs its key" in message
    assert Destination.objects.count() == 0


def test_a_missing_environment_variable_is_refused_before_anything_changes(site, monkeypatch):
    apply(site)
    before = stored()
    monkeypatch.delenv("SECOPS_ROUTING_KEY")

    message = str(refusal(edited(site, ("component: {value: auth}", "component: {value: x}"))))

    assert (
        "destinations[0].routing_key.from_env: the environment variable SECOPS_ROUTING_KEY "
        "is not set." in message
    )
    assert stored() == before


def test_an_unreadable_key_file_is_refused(site):
    (site.parent / "platform.key").unlink()

    message = str(refusal(site))

    assert "destinations[1].routing_key.from_file: cannot read" in message
    assert "No such file or directory" in message
    assert Destination.objects.count() == 0


def test_a_key_written_in_the_file_is_refused_without_repeating_it(site):
    text = site.read_text().replace(
        "{is_secret: true, from_env: SECOPS_ROUTING_KEY}", f"{{value: {ROUTING_KEY}}}"
    )

    message = str(refusal("-", stdin=text))

    assert "destinations[0].routing_key: the key is never written in the file" in message
    assert find_secrets(message) == []
    assert Destination.objects.count() == 0


def test_a_bad_key_is_refused_by_the_forms_rule_without_repeating_it(site, monkeypatch):
    monkeypatch.setenv("SECOPS_ROUTING_KEY", ROUTING_KEY[:-1] + "!")

    message = str(refusal(site))

    assert "destinations[0].routing_key: The integration key may contain only letters" in message
    assert find_secrets(message) == []


def test_broken_yaml_is_refused_with_its_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("destinations:\n  - name: [unclosed\n")

    message = str(refusal(path))

    assert f"{path}: not valid YAML or JSON: line 3" in message


def test_a_name_given_twice_is_refused(site):
    message = str(refusal(edited(site, ("name: Quiet check", "name: Privilege escalation"))))

    assert "detections[2].name: “Privilege escalation” is named twice in detections." in message


# Export.


def test_export_round_trips_through_apply_with_nothing_changed(site):
    apply(site)
    make_destination("Clicked in the admin", "C" * 32, custom_details={"a": [1, {"b": None}]})
    before = stored()

    output = apply("-", stdin=export())

    lines = plan_lines(output)
    assert len(lines) == 6 and all(line.startswith("= unchanged ") for line in lines), lines
    after = stored()
    # Only the marks moved: the records now belong to the file they came from.
    assert {row[3] for row in after["destinations"]} == {"stdin"}
    assert [row[:3] + row[4:] for row in after["destinations"]] == [
        row[:3] + row[4:] for row in before["destinations"]
    ]


def test_export_is_the_seeds_form_in_yaml_or_json_and_never_holds_a_key(site):
    apply(site)

    as_yaml, as_json = export(), export("--format", "json")

    assert yaml.safe_load(as_yaml) == json.loads(as_json)
    secops = json.loads(as_json)["destinations"][1]
    assert list(secops) == ["name", "routing_key", *(o.name for o in DESTINATION_OPTIONS)]
    assert {name: secops[name] for name in list(secops)[:10]} == {
        "name": "SecOps on-call",
        "routing_key": {"is_secret": True},
        "severity": {"value": "critical"},
        "component": {"value": "auth"},
        "group": {"value": "prod"},
        "class": {"value": "security"},
        "custom_details": {"value": {"team": "secops"}},
        "timeout": {"value": 20},
        "region": {"value": "us"},
        "enabled": {"value": True},
    }
    assert [d["name"] for d in json.loads(as_json)["detections"]] == [
        "Privilege escalation",
        "Quiet check",
        "Suspicious Login Attempts",
    ]
    for text in (as_yaml, as_json):
        assert find_secrets(text) == []
        assert ROUTING_KEY not in text and OTHER_ROUTING_KEY not in text
        assert MASKED_KEY not in text and ROUTING_KEY[-4:] not in text


# Records the file no longer names.


def test_records_left_out_of_the_file_stay_unmarked_unless_pruned(site):
    apply(site)
    path = edited(site, ("  - name: Quiet check\n    enabled: false\n", ""))

    output = apply(path)

    assert (
        '= keep detection "Quiet check": not in the file; no longer managed by '
        f"{path} (--prune deletes it)" in output
    )
    assert Detection.objects.get(name="Quiet check").managed_by == ""

    output = apply(path, "--prune")

    assert '- delete detection "Quiet check"' in plan_lines(output)
    assert not Detection.objects.filter(name="Quiet check").exists()


def test_prune_deletes_a_destination_the_file_does_not_name(site):
    make_destination("Retired rota", "A" * 32)
    make_detection("Old detection")

    output = apply(site, "--prune")

    assert '- delete destination "Retired rota"' in output
    assert '- delete detection "Old detection"' in output
    assert not Destination.objects.filter(name="Retired rota").exists()


def test_a_detection_cannot_name_a_destination_that_prune_deletes(site):
    make_destination("Retired rota", "A" * 32)
    path = edited(site, ("destinations: [SecOps on-call]\n", "destinations: [Retired rota]\n"))

    message = str(refusal(path, "--prune"))

    assert "detections[1].destinations[0]: “Retired rota” is not in the file" in message
    assert Destination.objects.filter(name="Retired rota").exists()
    assert Destination.objects.count() == 1


# The option table covers the form.


def test_every_field_of_the_admin_forms_is_an_option_of_the_file():
    # A field the file does not know would be reset by every apply: add it to options.py.
    options = {option.field for option in DESTINATION_OPTIONS} | {"name", ROUTING_KEY_OPTION}
    assert set(DestinationForm.base_fields) == options

    assert set(DetectionForm.base_fields) == {o.field for o in DETECTION_VALUES} | {"name"}


# A value other than the default for each option (a destination's name for references).
SAMPLES = {
    "severity": "info",
    "component": "db",
    "group": "staging",
    "class": "audit",
    "custom_details": {"runbook": "https://wiki.example.com/r"},
    "timeout": 7,
    "region": "eu",
    "enabled": False,
    "minimum_severity": "CRITICAL",
    "all_detections": True,
    "auto_resolve": True,
    "fallback": "Platform on-call",
    "summary_template": "{severity} {detection_name}",
}


@pytest.mark.parametrize("option", DESTINATION_OPTIONS, ids=lambda option: option.name)
def test_each_option_is_applied_shown_and_exported(site, option):
    apply(site)
    document = yaml.safe_load(export())
    secops = next(d for d in document["destinations"] if d["name"] == "SecOps on-call")
    old = secops[option.name]["value"]
    secops[option.name] = {"value": SAMPLES[option.name]}

    output = apply("-", stdin=json.dumps(document))

    assert plan_lines(output)[:2] == [
        '= unchanged destination "Platform on-call"',
        f'~ update destination "SecOps on-call": {option.name} {json.dumps(old)} → '
        f"{json.dumps(SAMPLES[option.name])}",
    ]
    assert yaml.safe_load(export()) == document
