"""Finding a destination the way an operator names it on the command line."""

from django.core.management.base import CommandError

from .models import Destination


def destination_by_name_or_id(value: str) -> Destination:
    """The destination with this name, or else this id; CommandError when there is none."""
    destination = Destination.objects.filter(name=value).first()
    if destination is None and value.isdigit():
        destination = Destination.objects.filter(pk=int(value)).first()
    if destination is None:
        known = ", ".join(Destination.objects.values_list("name", flat=True)[:10]) or "none yet"
        raise CommandError(f"No destination named or numbered “{value}” (destinations: {known}).")
    return destination
