from django.apps import AppConfig


class DetectionsConfig(AppConfig):
    name = "detections"
    verbose_name = "Detections"
