"""The destination form: write-only routing key and a JSON object of custom details."""

import json

from django import forms
from django.core.exceptions import ValidationError

from project import strict_json

from .keys.routing import clean_routing_key
from .models import Destination
from .pagerduty.events import RESERVED_DETAIL_KEYS, SUMMARY_PLACEHOLDERS

CUSTOM_DETAILS_MAX_BYTES = 64 * 1024
# Deeper objects are refused: no team's details need them, and every level costs recursion each
# time an event is built from them.
CUSTOM_DETAILS_MAX_DEPTH = 32

ROUTING_KEY_HELP = (
    "In PagerDuty: Services → Service Directory → your service → Integrations tab → "
    "Add an integration → “Events API V2” → Add, then open the new integration and copy its "
    "Integration Key (32 letters and digits). Not an API Access Key: those are for PagerDuty's "
    "REST API and cannot send events. The key is stored encrypted and never shown again."
)


class CustomDetailsField(forms.JSONField):
    """A JSON object whose errors say where and what, not just "Enter a valid JSON"."""

    widget = forms.Textarea(attrs={"rows": 6, "cols": 80, "spellcheck": "false"})

    def to_python(self, value):
        # A box left blank (or holding only spaces and newlines) means no details at all.
        if value in self.empty_values or (isinstance(value, str) and not value.strip()):
            return {}
        if isinstance(value, dict):
            return value
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > CUSTOM_DETAILS_MAX_BYTES:
            raise ValidationError(
                "Custom details must be at most %(limit)d KB; these are %(size)d KB.",
                code="too_large",
                params={"limit": CUSTOM_DETAILS_MAX_BYTES // 1024, "size": -(-size // 1024)},
            )
        try:
            # NaN, Infinity and overlong numbers are refused here: they are not JSON, and the
            # stored details would otherwise break every event built from them.
            parsed = strict_json.loads(
                value, constant_hint="; use null or a string", echo_length=40
            )
        except json.JSONDecodeError as error:
            raise ValidationError(
                "Custom details are not valid JSON: %(reason)s "
                "at line %(line)d, column %(column)d.",
                code="invalid",
                params={"reason": error.msg, "line": error.lineno, "column": error.colno},
            ) from None
        except RecursionError:
            raise ValidationError(
                "Custom details are nested more than %(depth)d levels deep.",
                code="too_deep",
                params={"depth": CUSTOM_DETAILS_MAX_DEPTH},
            ) from None
        except ValueError as error:  # raised by strict_json's hooks, each with one sentence
            raise ValidationError(
                "Custom details are not valid JSON: %(reason)s",
                code="invalid",
                params={"reason": str(error)},
            ) from None
        if not isinstance(parsed, dict):
            raise ValidationError(
                'Custom details must be a JSON object, like {"team": "secops"}; got %(kind)s.',
                code="not_object",
                params={"kind": _json_kind(parsed)},
            )
        _check_storable(parsed)
        reserved = sorted(set(parsed) & RESERVED_DETAIL_KEYS)
        if reserved:
            raise ValidationError(
                "These names are reserved for the detection's own details: %(names)s. Rename them.",
                code="reserved",
                params={"names": ", ".join(reserved)},
            )
        return parsed

    def bound_data(self, data, initial):
        # Keep what the admin typed when the form is redisplayed with an error.
        return data

    def prepare_value(self, value):
        if isinstance(value, str):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False)


def _check_storable(details: dict) -> None:
    """Refuse what the databases cannot store: NUL, lone surrogates, or too deep a structure."""
    problem = strict_json.unstorable(details, max_depth=CUSTOM_DETAILS_MAX_DEPTH)
    if problem == "nul":
        raise ValidationError(
            "Custom details contain a NUL character (\\u0000), which cannot be stored.",
            code="nul",
        )
    if problem == "surrogate":
        raise ValidationError(
            "Custom details contain a lone UTF-16 surrogate (such as \\ud800), "
            "which is not valid Unicode.",
            code="surrogate",
        )
    if problem == "too_deep":
        raise ValidationError(
            "Custom details are nested more than %(depth)d levels deep.",
            code="too_deep",
            params={"depth": CUSTOM_DETAILS_MAX_DEPTH},
        )


# Not the intake's _json_type: an admin reads JSON's own words here ("an array", "true/false"),
# an engine's developer reads Python-neutral ones there ("a list", "a boolean"); tests pin both.
def _json_kind(value) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "true/false"
    if value is None:
        return "null"
    return "a number"


class DestinationForm(forms.ModelForm):
    routing_key = forms.CharField(
        label="Integration key",
        required=False,
        strip=False,
        # Browsers ignore autocomplete="off" on a password input and offer to fill in, or save,
        # the admin's own password; "new-password" tells them this is no sign-in field.
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=ROUTING_KEY_HELP,
    )
    custom_details = CustomDetailsField(
        required=False,
        # A declared field does not inherit the model's default: without this the add form
        # would render None as "null", which is not an object, and the first save would fail.
        initial=dict,
        help_text="A JSON object added to every event's custom details, e.g. "
        '{"team": "secops", "runbook": "https://wiki.example.com/runbooks/logins"}. '
        "Its names may not repeat the detection's own details (run_id, severity, …).",
    )

    class Meta:
        model = Destination
        fields = [
            "name",
            "enabled",
            "region",
            "routing_key",
            "severity_override",
            "component",
            "group",
            "event_class",
            "custom_details",
            "timeout_seconds",
            # Routing and the incident's lifecycle.
            "minimum_severity",
            "all_detections",
            "auto_resolve",
            # Fallback and summary template (§10).
            "fallback",
            "summary_template",
        ]
        widgets = {
            "summary_template": forms.TextInput(attrs={"size": 80, "spellcheck": "false"}),
        }
        help_texts = {
            "name": "How this destination is listed and picked on detections, "
            "e.g. the PagerDuty service it pages.",
            "enabled": "A disabled destination is skipped when runs are delivered; "
            "test alerts still reach it.",
            "region": "Where your PagerDuty account is hosted: EU if its address ends in "
            ".eu.pagerduty.com, otherwise US.",
            "severity_override": "Automatic follows the detection: CRITICAL → critical, "
            "HIGH → error, MEDIUM → warning, LOW → info. Pick one to send every event "
            "of this destination at that severity.",
            "component": "PagerDuty's component: the part of the system affected, e.g. “auth”. "
            "Left out of the event when blank.",
            "group": "PagerDuty's group: a logical grouping of components, e.g. “prod”. "
            "Left out of the event when blank.",
            "event_class": "PagerDuty's class: the type of event, e.g. “security”. "
            "Left out of the event when blank.",
            # Routing and the incident's lifecycle.
            "minimum_severity": "Page this destination only for detections at or above this "
            "severity (CRITICAL > HIGH > MEDIUM > LOW), e.g. “CRITICAL only” for an on-call "
            "engineering service. Applies to attached detections and, with “All detections”, "
            "to every detection. Less severe runs are recorded, but this service is not paged.",
            "all_detections": "Receive the pages of every detection, attached to it or not "
            "(still filtered by the minimum severity); each run pages this destination once. "
            "Each detection's page lists who its runs would page, and why.",
            "auto_resolve": "When a detection's run no longer matches, resolve the incident its "
            "last trigger opened here, in order after that trigger. Off: incidents stay open "
            "for a person to resolve. After a routing key rotation, incidents triggered "
            "through the old key are not resolved (PagerDuty would not match them): the "
            "delivery log says which to resolve by hand.",
            "fallback": "Where a page goes when this destination's delivery fails for good "
            "(PagerDuty refused it, e.g. a revoked key or a disabled service, or it gave up "
            "retrying). The same event is sent there with _fallback_from in its custom details "
            "naming this destination and the failure. One hop only: if the fallback fails too, "
            "nothing more is tried. Nothing is sent to a disabled fallback; test alerts never "
            "fall back.",
            "summary_template": "Blank: the standard “[SEVERITY] Name - link”. Otherwise the "
            "summary the on-call engineer reads first, e.g. "
            "“[{severity}] {outcome} {detection_name} - {replay_link}” reads "
            "“[HIGH] ERROR Suspicious Login Attempts - https://…”. Placeholders: "
            + ", ".join("{" + name + "}" for name in SUMMARY_PLACEHOLDERS)
            + "; {replay_link} is empty when a run has none. Write {{ and }} for literal braces. "
            "At most 1024 characters are sent: the name is shortened first, the link last.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Never render the stored key back, not even into the password input.
        self.initial["routing_key"] = ""
        if "fallback" in self.fields:
            # Names only: an undecryptable key on another destination must not break the form.
            choices = Destination.objects.defer("routing_key").order_by("name")
            if self.instance.pk:
                choices = choices.exclude(pk=self.instance.pk)
            self.fields["fallback"].queryset = choices
            self.fields["fallback"].empty_label = "None: a failed page stays failed"
        if self.instance.pk:
            self.fields["routing_key"].help_text = (
                f"Current key: {self.instance.masked_routing_key}. Leave blank to keep it; "
                f"enter a new one to replace it. " + ROUTING_KEY_HELP
            )

    def clean_routing_key(self) -> str | None:
        value = self.cleaned_data.get("routing_key", "")
        if self.instance.pk and not value.strip():
            return None  # keep the current key
        return clean_routing_key(value)

    def _post_clean(self):
        # The key goes through set_routing_key (which stamps the rotation time), never through
        # construct_instance, so "blank keeps the current key" holds.
        key = self.cleaned_data.pop("routing_key", None)
        if key is not None:
            self.instance.set_routing_key(key)
        super()._post_clean()
        if key is not None:
            self.cleaned_data["routing_key"] = key
