"""What the admin shows of destinations: their pages, the delivery log, actions, the health page."""

from . import delivery, destination  # noqa: F401  registers the model admins
