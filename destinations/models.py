"""PagerDuty destinations and the outbox of events to deliver to them."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from .audit.records import AuditedHistory, KeyChangeRecord, note_key_change
from .keys.encryption import DecryptionError
from .keys.fields import EncryptedTextField
from .keys.routing import UNREADABLE_KEY, mask_routing_key
from .pagerduty.events import SUMMARY_MAX_LENGTH, SummaryTemplateError, parse_summary_template

DEFAULT_TIMEOUT_SECONDS = 30
MIN_TIMEOUT_SECONDS = 1
MAX_TIMEOUT_SECONDS = 120


class Region(models.TextChoices):
    US = "us", "US (events.pagerduty.com)"
    EU = "eu", "EU (events.eu.pagerduty.com)"


class SeverityOverride(models.TextChoices):
    AUTOMATIC = "", "Automatic (from detection severity)"
    CRITICAL = "critical", "Critical"
    ERROR = "error", "Error"
    WARNING = "warning", "Warning"
    INFO = "info", "Info"


class MinimumSeverity(models.TextChoices):
    """The least severe detection a destination is paged for (detections' severities, in order)."""

    ALL = "", "All severities"
    CRITICAL = "CRITICAL", "CRITICAL only"
    HIGH = "HIGH", "HIGH and above"
    MEDIUM = "MEDIUM", "MEDIUM and above"
    LOW = "LOW", "LOW and above"


def validate_summary_template(value: str) -> None:
    """Refuse a summary template with an unknown placeholder, or attribute or index access."""
    try:
        parse_summary_template(value)
    except SummaryTemplateError as error:
        raise ValidationError(str(error), code="summary_template") from None


class Destination(models.Model):
    name = models.CharField(max_length=200, unique=True)
    enabled = models.BooleanField(default=True)
    region = models.CharField(max_length=2, choices=Region.choices, default=Region.US)
    routing_key = EncryptedTextField(
        help_text="The 32-character Integration Key of an Events API v2 integration."
    )
    severity_override = models.CharField(
        max_length=8,
        choices=SeverityOverride.choices,
        default=SeverityOverride.AUTOMATIC,
        blank=True,
    )
    component = models.CharField(max_length=255, blank=True)
    group = models.CharField(max_length=255, blank=True)
    event_class = models.CharField("class", max_length=255, blank=True)
    custom_details = models.JSONField(default=dict, blank=True)
    timeout_seconds = models.PositiveSmallIntegerField(
        default=DEFAULT_TIMEOUT_SECONDS,
        validators=[MinValueValidator(MIN_TIMEOUT_SECONDS), MaxValueValidator(MAX_TIMEOUT_SECONDS)],
        help_text="How long to wait for PagerDuty's answer, 1 to 120 seconds.",
    )
    # Routing and the incident's lifecycle (design §10); the form carries their help.
    minimum_severity = models.CharField(
        max_length=8, choices=MinimumSeverity.choices, default=MinimumSeverity.ALL, blank=True
    )
    all_detections = models.BooleanField("all detections", default=False)
    auto_resolve = models.BooleanField("auto-resolve", default=False)
    # Fallback and summary template (§10).
    fallback = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fallback_for",
    )
    summary_template = models.CharField(
        max_length=SUMMARY_MAX_LENGTH, blank=True, validators=[validate_summary_template]
    )
    routing_key_rotated_at = models.DateTimeField("key stored at", null=True, editable=False)
    # Blank: edited in the admin. Otherwise the configuration file (as apply_config was given
    # it, or "API") that made it so: the admin shows the record read-only.
    managed_by = models.CharField(max_length=255, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Who changed what and when (destinations/audit/). The key's column is left out of the
    # snapshot: its token would be a copy of the secret; the record says "key changed" instead.
    history = AuditedHistory(
        excluded_fields=["routing_key"],
        bases=[KeyChangeRecord],
        verbose_name="destination change",
        verbose_name_plural="destination changes",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(timeout_seconds__gte=MIN_TIMEOUT_SECONDS)
                & models.Q(timeout_seconds__lte=MAX_TIMEOUT_SECONDS),
                name="destination_timeout_in_range",
            ),
            # The sender knows only these regions; a fixture or a raw write must not add one.
            models.CheckConstraint(
                condition=models.Q(region__in=Region.values), name="destination_region_known"
            ),
            # Routing compares it with the detection's severity: an unknown value would page
            # nobody, or everybody, without a word.
            models.CheckConstraint(
                condition=models.Q(minimum_severity__in=MinimumSeverity.values),
                name="destination_minimum_severity_known",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        loop = self.fallback_loop()
        if len(loop) == 2:
            raise ValidationError(
                {"fallback": "A destination cannot fall back to itself. Pick another one."},
                code="fallback_self",
            )
        if loop:
            raise ValidationError(
                {"fallback": f"That would be a loop: {' → '.join(loop)}. Pick another fallback."},
                code="fallback_loop",
            )

    def fallback_loop(self) -> list[str]:
        """The names round the loop this destination's fallback would close, or [] if none."""
        if self.fallback_id is None:
            return []
        if self.pk is not None and self.fallback_id == self.pk:
            return [self.name, self.name]
        path, seen = [self.name], {self.pk}
        # Names and links only: an undecryptable key elsewhere must not break this check.
        rows = Destination.objects.values_list("pk", "name", "fallback_id")
        names, links = {}, {}
        for pk, name, fallback_id in rows:
            names[pk], links[pk] = name, fallback_id
        current = self.fallback_id
        while current is not None and current not in seen:
            seen.add(current)
            path.append(names.get(current, "?"))
            current = links.get(current)
        if current is not None and current == self.pk:
            return [*path, self.name]
        return []

    @property
    def masked_routing_key(self) -> str:
        readable = self.readable_routing_key()
        return UNREADABLE_KEY if readable is None else mask_routing_key(readable)

    def readable_routing_key(self) -> str | None:
        """The key, or None when no key in FIELD_ENCRYPTION_KEYS can decrypt it."""
        try:
            return self.routing_key
        except DecryptionError:
            # Left deferred: a later save() does not write the unreadable token back.
            return None

    def set_routing_key(self, key: str) -> None:
        """Replace the key and stamp the rotation time when it actually changes."""
        if key != self.readable_routing_key() or self.routing_key_rotated_at is None:
            self.routing_key = key
            self.routing_key_rotated_at = timezone.now()
            note_key_change(self, mask_routing_key(key))

    def routing_key_age_days(self, now=None) -> int | None:
        if self.routing_key_rotated_at is None:
            return None
        return ((now or timezone.now()) - self.routing_key_rotated_at).days


class DeliveryKind(models.TextChoices):
    TRIGGER = "trigger"
    RESOLVE = "resolve"
    TEST = "test"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


UNFINISHED = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)
FINISHED = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)

# A test alert's dedup key starts with this, and so does the resolve sent after it (a delivery of
# kind `resolve`): that is how a test's resolve is told from a detection's (whose keys are hex).
TEST_DEDUP_PREFIX = "test-"


class Delivery(models.Model):
    """One event to send to one destination: the outbox row and its delivery log."""

    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="deliveries"
    )
    run = models.ForeignKey(
        "detections.DetectionRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="deliveries",
    )
    kind = models.CharField(max_length=8, choices=DeliveryKind.choices)
    # The event as built, without the routing key (added at send time only).
    event = models.JSONField()
    dedup_key = models.CharField(max_length=255)
    status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(
        default=0, help_text="Attempts since it was queued (or re-queued by Retry now)."
    )
    total_attempts = models.PositiveIntegerField(default=0, help_text="Attempts in all.")
    queued_at = models.DateTimeField(
        default=timezone.now, help_text="The age limit counts from here."
    )
    next_attempt_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_token = models.UUIDField(null=True, blank=True, editable=False)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    pagerduty_message = models.TextField(blank=True)
    pagerduty_errors = models.JSONField(default=list, blank=True)
    pagerduty_dedup_key = models.CharField(max_length=255, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When it was last delivered or failed. Retry now keeps the time of the "
        "failure, which counts as failing until the delivery is delivered.",
    )
    # A test alert that asked to be resolved but failed: if Retry now re-queues it and the
    # worker delivers it, a resolve follows, as it would have right after the first attempt.
    resolve_after = models.BooleanField(
        default=False, help_text="A test alert to resolve once it is delivered."
    )
    # The failed delivery whose event this one carries to that destination's fallback (§10).
    fallback_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="fallbacks",
        help_text="The failed delivery whose event this one took to the fallback.",
    )

    class Meta:
        verbose_name_plural = "deliveries"
        ordering = ["-created_at", "-id"]
        indexes = [
            # The claim: due pending rows in the claim's own order (so it reads only the rows it
            # takes, see claims._in_due_order()), and expired leases.
            models.Index(fields=["status", "next_attempt_at", "id"], name="delivery_due_in_order"),
            models.Index(fields=["status", "lease_expires_at"], name="delivery_lease"),
            # Order per incident: is an earlier delivery for this destination and key unfinished?
            models.Index(fields=["destination", "dedup_key", "id"], name="delivery_incident"),
            # The claim's check of it, on PostgreSQL: the incident's unfinished rows alone. The
            # index above holds the incident's whole history, so a check read through it (the
            # plan chosen while few rows are pending) visited every earlier row of the incident
            # for its status: 250 per due row with 10 thousand stored, growing with the log.
            # This one holds only pending and sending rows, a handful however long the log.
            # (SQLite does not use it: its queries bind the condition's values as parameters.)
            models.Index(
                fields=["destination", "dedup_key", "id"],
                condition=models.Q(status__in=UNFINISHED),
                name="delivery_incident_unfinished",
            ),
            # The destination list's last status and the health page; the delivery log filtered
            # by destination.
            models.Index(fields=["destination", "-created_at"], name="delivery_recent"),
            # The delivery log's page, in its order, unfiltered (and by day) or by each filter:
            # without them a page of the newest rows sorts every matching row first.
            models.Index(fields=["-created_at", "-id"], name="delivery_newest"),
            models.Index(fields=["status", "-created_at", "-id"], name="delivery_status_newest"),
            models.Index(fields=["kind", "-created_at", "-id"], name="delivery_kind_newest"),
            # And one destination's failures (or pending ones), the pair of filters most used.
            models.Index(
                fields=["destination", "status", "-created_at", "-id"],
                name="delivery_destination_status",
            ),
            # Deliveries by status and when they finished: what prune_deliveries walks, a
            # status at a time, and the health page's and /healthz's "delivered or failed
            # lately", without reading the rest of the log. (Not a partial index: SQLite uses
            # one only when the query repeats its condition literally, and Django's queries
            # bind parameters.)
            models.Index(fields=["status", "finished_at", "id"], name="delivery_finished"),
            # The health page's last failure per destination: one short index read each,
            # however many deliveries are stored.
            models.Index(
                fields=["destination", "status", "-finished_at", "-id"], name="delivery_failures"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} delivery #{self.pk}"


class DeliveryAttempt(models.Model):
    """One HTTP attempt of a delivery."""

    class Result(models.TextChoices):
        DELIVERED = "delivered"
        RETRY = "retry"
        FAILED = "failed"

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    result = models.CharField(max_length=10, choices=Result.choices)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["delivery", "started_at", "id"]
        indexes = [models.Index(fields=["delivery", "started_at"], name="attempt_delivery")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}"


class RateBudget(models.Model):
    """A destination's token bucket, kept in the database so every worker shares it."""

    destination = models.OneToOneField(
        Destination, on_delete=models.CASCADE, primary_key=True, related_name="rate_budget"
    )
    tokens = models.FloatField()
    refilled_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"budget of {self.destination_id}"


# The counters behind GET /metrics (destinations/metrics.py reads them, destinations/tallies.py
# adds to them in the transaction that stores what they count). Kept in the database rather than
# in each process: every web process and worker, on any host, reads and adds to the same figures,
# which survive restarts and the pruning of the delivery log. Rows cascade with their
# destination, so a deleted destination's series disappear.


class DeliveryOutcomeTally(models.Model):
    """How many deliveries of one kind reached one final status at one destination, ever."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="+")
    # trigger or resolve of a detection's incident, or test (a test alert or the resolve after it)
    kind = models.CharField(max_length=8)
    outcome = models.CharField(max_length=10)  # delivered or failed
    count = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["destination", "kind", "outcome"], name="delivery_outcome_tally_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.outcome} at {self.destination_id}: {self.count}"


class AttemptDurationTally(models.Model):
    """One bucket of a destination's attempt-duration histogram: attempts and their total time."""

    destination = models.ForeignKey(Destination, on_delete=models.CASCADE, related_name="+")
    # The bucket's upper bound as Prometheus writes it ("0.25", "+Inf"); each attempt is counted
    # in its own bucket only, and the scrape adds them up into cumulative buckets.
    le = models.CharField(max_length=16)
    count = models.PositiveBigIntegerField(default=0)
    duration_ms = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["destination", "le"], name="attempt_duration_tally_key")
        ]

    def __str__(self) -> str:
        return f"attempts up to {self.le} s at {self.destination_id}: {self.count}"


class RateLimitedTally(models.Model):
    """How many attempts to a destination PagerDuty answered 429 (rate limited), ever."""

    destination = models.OneToOneField(
        Destination, on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    count = models.PositiveBigIntegerField(default=0)

    def __str__(self) -> str:
        return f"429s at {self.destination_id}: {self.count}"


class DailyRollup(models.Model):
    """One destination's deliveries created on one past day, counted from the raw rows.

    Kept beyond DELIVERY_RETENTION_DAYS, so the health page's history outlives the delivery log.
    """

    destination = models.ForeignKey(
        Destination, on_delete=models.CASCADE, related_name="daily_rollups"
    )
    day = models.DateField(help_text="The local day (TIME_ZONE) the deliveries were created on.")
    # As the health page's DayCount: tests are among the three, and counted apart as well.
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    other = models.PositiveIntegerField(default=0, help_text="Pending or sending, never failed.")
    tests = models.PositiveIntegerField(default=0)
    pages_delivered = models.PositiveIntegerField(default=0)
    pages_failed = models.PositiveIntegerField(default=0)
    # The delivered pages' latencies as a histogram of fixed logarithmic buckets,
    # {bucket: [count, sum of milliseconds]} (destinations/retention/latency.py), so any days
    # add up into the window's p50/p95.
    latency = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["destination", "day"], name="rollup_once_a_day")
        ]

    def __str__(self) -> str:
        return f"rollup of {self.destination_id} on {self.day}"


class RolledUpDay(models.Model):
    """A past day whose deliveries are rolled up: the health page reads DailyRollup for it."""

    day = models.DateField(unique=True)
    rolled_up_at = models.DateTimeField(help_text="When the rollup read the day's deliveries.")
    unfinished = models.PositiveIntegerField(
        default=0, help_text="Deliveries still pending or sending then; it is rolled up again."
    )

    def __str__(self) -> str:
        return f"rolled up {self.day}"


class Housekeeping(models.Model):
    """The daily housekeeping (rollups, pruning): its schedule, lease and progress, one row."""

    name = models.CharField(max_length=32, primary_key=True)
    # The lease: a worker runs the job when it moves next_run_at forward with a compare-and-set,
    # so one worker runs it a day across every host; running_until keeps two runs apart.
    next_run_at = models.DateTimeField(default=timezone.now)
    running_until = models.DateTimeField(null=True, blank=True)
    holder = models.CharField(max_length=255, blank=True)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_result = models.TextField(blank=True)
    # What the last completed rollup pass saw: deliveries that finished before rolled_up_at, and
    # ids up to rolled_up_max_id, are in the rollups; later changes mark their days to redo.
    rolled_up_at = models.DateTimeField(null=True, blank=True)
    rolled_up_max_id = models.BigIntegerField(default=0)

    class Meta:
        verbose_name_plural = "housekeeping"

    def __str__(self) -> str:
        return f"housekeeping {self.name}"
