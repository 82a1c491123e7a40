"""Detection Destinations: detection outcomes delivered to PagerDuty."""

PRODUCT_NAME = "Detection Destinations"
__version__ = "0.1.0"
