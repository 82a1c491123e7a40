from django.urls import re_path

from . import api, config_api

app_name = "detections"

urlpatterns = [
    # A trailing slash is accepted too: APPEND_SLASH cannot redirect a POST.
    re_path(r"^detection-runs/?$", api.detection_runs, name="detection-runs"),
    re_path(r"^config/?$", config_api.config, name="config"),
]
