"""A fake PagerDuty Events API v2 server and validator for the tests and benchmarks."""

from .server import FakePagerDuty, Fault, Received
from .validation import validate_event

__all__ = ["FakePagerDuty", "Fault", "Received", "validate_event"]
