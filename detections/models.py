"""Detections (saved searches with a threshold), their run outcomes, and API tokens."""

import uuid

from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models

from destinations.audit.records import AuditedHistory
from destinations.pagerduty.events import REPLAY_LINK_MAX_LENGTH

# Counts and thresholds are stored as 64-bit integers; larger numbers are refused at the door.
MAX_COUNT = 2**63 - 1


class ReplayLinkValidator(URLValidator):
    """An absolute http(s) URL of up to REPLAY_LINK_MAX_LENGTH characters."""

    # Django's own URL validator stops at 2,048 characters; engines' replay links can be longer.
    max_length = REPLAY_LINK_MAX_LENGTH

    def __init__(self, **kwargs):
        super().__init__(schemes=["http", "https"], **kwargs)


class Severity(models.TextChoices):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


class MatchOperator(models.TextChoices):
    GREATER_THAN = "GREATER_THAN", "greater than (>)"
    GREATER_THAN_OR_EQUAL = "GREATER_THAN_OR_EQUAL", "greater than or equal (≥)"
    LESS_THAN = "LESS_THAN", "less than (<)"
    LESS_THAN_OR_EQUAL = "LESS_THAN_OR_EQUAL", "less than or equal (≤)"
    EQUAL = "EQUAL", "equal (=)"
    NOT_EQUAL = "NOT_EQUAL", "not equal (≠)"


class MatchEagerness(models.TextChoices):
    EAGER = "EAGER"
    EXHAUSTIVE = "EXHAUSTIVE"


class RunType(models.TextChoices):
    SCHEDULED = "SCHEDULED"
    MANUAL = "MANUAL"


class Outcome(models.TextChoices):
    MATCHED = "MATCHED"
    NOT_MATCHED = "NOT_MATCHED"
    ERROR = "ERROR"


class MatchExhaustiveness(models.TextChoices):
    COMPLETED = "COMPLETED"
    STOPPED_EARLY = "STOPPED_EARLY"


class Detection(models.Model):
    id = models.UUIDField("detection ID", primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=255, unique=True)
    description = models.TextField(blank=True)
    severity = models.CharField(max_length=8, choices=Severity.choices, default=Severity.HIGH)
    match_operator = models.CharField(
        max_length=24, choices=MatchOperator.choices, default=MatchOperator.GREATER_THAN
    )
    match_threshold = models.BigIntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(MAX_COUNT)]
    )
    match_eagerness = models.CharField(
        max_length=10, choices=MatchEagerness.choices, default=MatchEagerness.EAGER
    )
    enabled = models.BooleanField(default=True)
    destinations = models.ManyToManyField(
        "destinations.Destination", blank=True, related_name="detections"
    )
    # Blank: edited in the admin; otherwise the configuration file that manages it (see
    # Destination.managed_by).
    managed_by = models.CharField(max_length=255, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed what and when, the destinations it pages included (destinations/audit/).
    history = AuditedHistory(
        m2m_fields=["destinations"],
        verbose_name="detection change",
        verbose_name_plural="detection changes",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(match_threshold__gte=0), name="detection_threshold_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class DetectionRun(models.Model):
    detection = models.ForeignKey(Detection, on_delete=models.CASCADE, related_name="runs")
    run_id = models.CharField("run ID", max_length=255, unique=True)
    run_type = models.CharField(max_length=10, choices=RunType.choices)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    match_count = models.BigIntegerField(validators=[MinValueValidator(0)])
    ran_at = models.DateTimeField()
    range_start = models.DateTimeField()
    range_end = models.DateTimeField()
    match_exhaustiveness = models.CharField(
        max_length=14, choices=MatchExhaustiveness.choices, blank=True
    )
    search_id = models.CharField("search ID", max_length=255, blank=True)
    trace_id = models.CharField("trace ID", max_length=255, blank=True)
    # The first errors the engine sent, each bounded; errors_total counts all it sent.
    errors = models.JSONField(default=list, blank=True)
    errors_total = models.PositiveIntegerField(default=0)
    # Text with its own validator, not a URLField, whose validator refuses past 2,048 characters.
    replay_link = models.CharField(
        max_length=REPLAY_LINK_MAX_LENGTH, blank=True, validators=[ReplayLinkValidator()]
    )
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-ran_at", "-id"]
        indexes = [
            # A detection's newest runs (its page, its list's last outcome), and the run log
            # filtered by detection.
            models.Index(fields=["detection", "-ran_at"], name="run_detection_ran_at"),
            # The run log's page, in its order, unfiltered (and by day) or by each filter.
            models.Index(fields=["-ran_at", "-id"], name="run_newest"),
            models.Index(fields=["outcome", "-ran_at", "-id"], name="run_outcome_newest"),
            models.Index(fields=["run_type", "-ran_at", "-id"], name="run_type_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.detection.name} run {self.run_id}"


class RunOutcomeTally(models.Model):
    """How many detection runs were recorded with one outcome, ever (GET /metrics reads it)."""

    # In the database, as the delivery tallies (destinations/models.py): every process agrees,
    # and the figure outlives restarts.
    outcome = models.CharField(max_length=12, choices=Outcome.choices, primary_key=True)
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.outcome} runs: {self.count}"


class TokenScope(models.TextChoices):
    RUNS = "runs", "runs (records detection runs)"
    CONFIG = "config", "config (exports and applies the configuration)"


class ApiToken(models.Model):
    """A bearer token for the HTTP API, good for one scope; only its SHA-256 is stored."""

    name = models.CharField(max_length=100, unique=True)
    scope = models.CharField(
        max_length=8, choices=TokenScope.choices, default=TokenScope.RUNS, editable=False
    )
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    token_hash = models.CharField(max_length=64, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return self.name
