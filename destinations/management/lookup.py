"""Finding a destination the way an operator names it on the command line."""

from django.core.management.base import CommandError

from ..models import Destination


def destination_by_name_or_id(value: str) -> Destination:
    """The destination with this name, or else this id; CommandError when there is none."""
    # The key is loaded only when used, so a destination whose key cannot be decrypted can
    # still be found (to rotate its key, say) and the failure is reported where it matters.
    destinations = Destination.objects.defer("routing_key")
    destination = destinations.filter(name=value).first()
    if destination is None and value.isdigit():
        destination = destinations.filter(pk=int(value)).first()
    if destination is None:
        known = ", ".join(Destination.objects.values_list("name", flat=True)[:10]) or "none yet"
        raise CommandError(f"No destination named or numbered “{value}” (destinations: {known}).")
    return destination
