from django.apps import AppConfig


class DestinationsConfig(AppConfig):
    name = "destinations"
    verbose_name = "PagerDuty destinations"

    def ready(self) -> None:
        from . import checks  # noqa: F401  registers the system checks
