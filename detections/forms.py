"""The detection form, shared by the admin and configuration files."""

from django import forms

from .models import Detection


class DetectionForm(forms.ModelForm):
    """The detection form, with help that says what each field does to the PagerDuty event."""

    class Meta:
        model = Detection
        fields = [
            "name",
            "description",
            "severity",
            "enabled",
            "match_operator",
            "match_threshold",
            "match_eagerness",
            "destinations",
        ]
        help_texts = {
            "name": "Runs of one detection update one PagerDuty incident; its dedup key comes "
            "from this name, so renaming starts a new incident.",
            "severity": "Becomes the event's PagerDuty severity unless a destination overrides it: "
            "CRITICAL → critical, HIGH → error, MEDIUM → warning, LOW → info.",
            "match_operator": "A run matches when its count compares to the threshold like this, "
            "e.g. greater than 10.",
            "match_threshold": "A whole number, 0 or more.",
            "match_eagerness": "How the detection engine searches; sent in the event's "
            "custom details.",
            "enabled": "Runs of a disabled detection are still recorded, but nobody is paged.",
            "destinations": "Every enabled destination chosen here gets an event when a run "
            "matches or ends in error, unless the detection is below the destination's minimum "
            "severity; destinations that receive all detections get it without being chosen. "
            "“Pages” below shows who, once saved. Destinations are added under PagerDuty "
            "destinations.",
        }
