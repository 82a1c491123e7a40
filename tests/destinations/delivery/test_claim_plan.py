"""A burst of pages after a quiet spell is claimed through the incident index, on PostgreSQL.

After a long quiet spell the table's statistics say almost nothing is unfinished. The claim's
"no earlier unfinished event of this incident" check, written as NOT EXISTS, was then planned
as an anti-join that read every unfinished row once per due row: with 2,000 pending after
200,000 delivered, 1.5 s a claim, so a storm of pages drained at a few pages a second.
"""

import json

import pytest
from django.db import connection, transaction
from django.utils import timezone

from destinations.delivery.claims import _claimable, _pending
from tests.support.factories import make_destination
from tests.support.routing_keys import ROUTING_KEY

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.postgres,
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="reads PostgreSQL's plans"),
]

COLUMNS = (
    "destination_id, kind, event, dedup_key, status, attempts, total_attempts, queued_at, "
    "next_attempt_at, pagerduty_message, pagerduty_errors, pagerduty_dedup_key, last_error, "
    "created_at, delivered_at, finished_at, resolve_after"
)


def _store(destination_id: int, count: int, *, status: str, start: int, days_ago: int) -> None:
    """Rows written in bulk SQL, as a long-lived log holds them."""
    when = f"now() - interval '{days_ago} days'"
    finished = when if status == "delivered" else "NULL"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO destinations_delivery ({COLUMNS}) "
            f"SELECT %s, 'trigger', '{{}}'::jsonb, md5(g::text), %s, 0, 0, {when}, {when}, "
            f"'', '[]'::jsonb, '', '', {when}, {finished}, {finished}, false "
            "FROM generate_series(%s, %s) g",
            [destination_id, status, start, start + count - 1],
        )


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def test_a_burst_after_a_quiet_spell_probes_the_incident_index_per_due_row():
    destination = make_destination("Storm rota", ROUTING_KEY)
    _store(destination.pk, 20_000, status="delivered", start=1, days_ago=30)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE destinations_delivery")  # the quiet spell: nothing unfinished
    _store(destination.pk, 500, status="pending", start=1_000_000, days_ago=0)

    with transaction.atomic():
        plan = (
            _claimable().filter(_pending(timezone.now()))[:8].explain(format="json", analyze=True)
        )
    nodes = list(_nodes(json.loads(plan)[0]["Plan"]))
    assert not [node for node in nodes if node.get("Join Type") == "Anti"], plan
    probes = [node for node in nodes if node.get("Index Name") == "delivery_incident"]
    assert probes and all("destination_id" in node.get("Index Cond", "") for node in probes), plan
    # Each due row's check reads its own incident's rows, not every unfinished row.
    assert sum(node.get("Rows Removed by Filter", 0) for node in probes) == 0, plan
