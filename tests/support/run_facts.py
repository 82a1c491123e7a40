"""A run of the reference detection, as the pure event builders take it (no database)."""

from datetime import UTC, datetime

from destinations.pagerduty.events import RunFacts

REFERENCE_LINK = "https://app.example.com/replay/123"

REFERENCE_RUN = RunFacts(
    detection_id="7d1c2f0e-3b4a-4c5d-8e9f-0a1b2c3d4e5f",
    detection_name="Suspicious Login Attempts",
    description="Many failed logins followed by a success.",
    severity="HIGH",
    match_operator="GREATER_THAN",
    match_threshold=5,
    match_eagerness="EAGER",
    outcome="MATCHED",
    match_count=12,
    run_type="SCHEDULED",
    run_id="run-2024-05-01-1200",
    ran_at=datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC),
    range_start=datetime(2024, 5, 1, 11, 0, tzinfo=UTC),
    range_end=datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
    match_exhaustiveness="COMPLETED",
    search_id="search-42",
    trace_id="trace-abc",
    replay_link=REFERENCE_LINK,
)
