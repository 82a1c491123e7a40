"""Every gunicorn process answers /metrics with what a separate worker process recorded."""

import pytest
import requests

from bench.sites import Site, stop
from tests.detections.test_intake_edges import start_gunicorn
from tests.support.fake_pagerduty import Fault
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY
from tests.support.scrape import METRICS_URL, parse

pytestmark = pytest.mark.slow

WEB_PROCESSES = 3
SEED = f"""
from tests.support.factories import make_destination, queue_event
paged = make_destination("SecOps on-call", {ROUTING_KEY!r})
refused = make_destination("Platform on-call", {OTHER_ROUTING_KEY!r})
for n in range(20):
    queue_event(paged, f"paged-{{n}}")
for n in range(10):
    queue_event(refused, f"refused-{{n}}")
"""


def test_every_web_process_reads_the_counts_a_worker_process_recorded(tmp_path, fake_pagerduty):
    site = Site.create(tmp_path / "site", events_url=fake_pagerduty.url)
    site.manage("migrate", "--noinput", "-v", "0")
    site.manage("shell", "-c", SEED)
    fake_pagerduty.refuse_key(OTHER_ROUTING_KEY, 400)
    # The first three sends (the first pages, in queue order) are rate limited for a minute.
    fake_pagerduty.inject(Fault.status(429, headers={"Retry-After": "60"}), times=3)
    site.manage("deliver_alerts", "--once", "--concurrency", "1")

    process, base = start_gunicorn(site, workers=WEB_PROCESSES)
    try:
        # A new connection each time, so the requests spread over the web processes.
        answers = [
            requests.get(f"{base}{METRICS_URL}", headers={"Connection": "close"}, timeout=10)
            for _ in range(4 * WEB_PROCESSES)
        ]
    finally:
        stop(process)

    assert {answer.status_code for answer in answers} == {200}
    scrapes = [parse(answer.text) for answer in answers]
    oldest = "detection_destinations_oldest_pending_age_seconds"
    assert all(scraped.value(oldest) > 0 for scraped in scrapes)
    for scraped in scrapes:  # the same counts from every process; only the age moves on
        del scraped[(oldest, ())]
    assert all(scraped == scrapes[0] for scraped in scrapes)
    scraped = scrapes[0]
    deliveries = "detection_destinations_deliveries_total"
    value = scraped.value
    assert (
        value(deliveries, destination="SecOps on-call", kind="trigger", outcome="delivered") == 17
    )
    assert value(deliveries, destination="Platform on-call", kind="trigger", outcome="failed") == 10
    assert value("detection_destinations_rate_limited_total", destination="SecOps on-call") == 3
    duration = "detection_destinations_attempt_duration_seconds_count"
    assert value(duration, destination="SecOps on-call") == 20
    assert value(duration, destination="Platform on-call") == 10
    assert value("detection_destinations_queue", status="pending") == 3
