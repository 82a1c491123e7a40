"""A detection run as the facts its PagerDuty event is built from."""

from destinations.pagerduty.events import RunFacts


def run_facts(run) -> RunFacts:
    """The plain facts of a detection run that the event builder needs."""
    detection = run.detection
    return RunFacts(
        detection_id=str(detection.pk),
        detection_name=detection.name,
        description=detection.description,
        severity=detection.severity,
        match_operator=detection.match_operator,
        match_threshold=detection.match_threshold,
        match_eagerness=detection.match_eagerness,
        outcome=run.outcome,
        match_count=run.match_count,
        run_type=run.run_type,
        run_id=run.run_id,
        ran_at=run.ran_at,
        range_start=run.range_start,
        range_end=run.range_end,
        match_exhaustiveness=run.match_exhaustiveness or None,
        search_id=run.search_id or None,
        trace_id=run.trace_id or None,
        errors=list(run.errors or []),
        errors_total=run.errors_total,
        replay_link=run.replay_link or None,
    )
