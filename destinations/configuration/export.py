"""Writing the configuration out: every destination and detection, by name, keys never."""

import json
from typing import Any, Literal

import yaml

from detections.models import Detection

from ..models import Destination
from .options import DESTINATION_OPTIONS, DETECTION_VALUES, ROUTING_KEY_OPTION

type Format = Literal["yaml", "json"]
FORMATS: tuple[Format, ...] = ("yaml", "json")
# The only thing the file ever says of a key.
SECRET = {"is_secret": True}


def export_config() -> dict[str, list[dict[str, Any]]]:
    """The whole configuration in the file's form, ordered by name so exports compare cleanly."""
    # The key is never read: an export neither needs it nor fails on one that cannot be decrypted.
    destinations = Destination.objects.defer("routing_key").order_by("name")
    if references := _references(DESTINATION_OPTIONS, "one"):
        destinations = destinations.select_related(*references)
    detections = Detection.objects.prefetch_related(*_references(DETECTION_VALUES, "many"))
    return {
        "destinations": [destination_entry(d) for d in destinations],
        "detections": [detection_entry(d) for d in detections.order_by("name")],
    }


def destination_entry(destination: Destination) -> dict[str, Any]:
    """One destination as the file writes it: its name, the key's placeholder, every option."""
    options = {option.name: {"value": option.read(destination)} for option in DESTINATION_OPTIONS}
    return {"name": destination.name, ROUTING_KEY_OPTION: dict(SECRET), **options}


def detection_entry(detection: Detection) -> dict[str, Any]:
    """One detection as the file writes it: plain values, its destinations by name."""
    return {"name": detection.name, **{o.name: o.read(detection) for o in DETECTION_VALUES}}


def render_config(document: dict, *, output_format: Format = "yaml") -> str:
    """The document as YAML (the default) or JSON text."""
    if output_format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    # Flow style for collections of plain values only: each option reads {value: …} on its line.
    return yaml.safe_dump(
        document, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
    )


def _references(options, reference: str) -> list[str]:
    return [option.field for option in options if option.kind.reference == reference]
