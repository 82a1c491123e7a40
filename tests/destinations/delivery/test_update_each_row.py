"""Each row's own new values in one statement, on SQLite and PostgreSQL alike."""

from datetime import UTC, datetime

import pytest

from destinations.delivery.compiled import update_each_row
from destinations.models import Delivery, DeliveryStatus, RateBudget
from tests.support.factories import make_destination, queue_event
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

pytestmark = pytest.mark.django_db

FINISHED = datetime(2026, 12, 1, 9, 30, 15, 123456, tzinfo=UTC)


def test_every_row_gets_its_own_values_and_no_other_row_changes():
    destination = make_destination("SecOps", ROUTING_KEY)
    first, second, untouched = (queue_event(destination, f"k-{n}") for n in range(3))

    update_each_row(
        Delivery,
        ("status", "last_status_code", "last_error", "pagerduty_errors", "finished_at"),
        [
            # A column NULL in every row still has its column's type (PostgreSQL would make it
            # text): no answer came for either.
            (first.pk, DeliveryStatus.FAILED, None, "connection refused", [], FINISHED),
            (second.pk, DeliveryStatus.PENDING, None, "naïve ✓ 'quoted'", ["a", {"b": 1}], None),
        ],
    )

    rows = {
        row["pk"]: row
        for row in Delivery.objects.values(
            "pk", "status", "last_status_code", "last_error", "pagerduty_errors", "finished_at"
        )
    }
    assert rows[first.pk] == {
        "pk": first.pk,
        "status": "failed",
        "last_status_code": None,
        "last_error": "connection refused",
        "pagerduty_errors": [],
        "finished_at": FINISHED,
    }
    assert rows[second.pk] == {
        "pk": second.pk,
        "status": "pending",
        "last_status_code": None,
        "last_error": "naïve ✓ 'quoted'",
        "pagerduty_errors": ["a", {"b": 1}],
        "finished_at": None,
    }
    assert rows[untouched.pk]["status"] == "pending"
    assert rows[untouched.pk]["last_error"] == ""


def test_a_table_keyed_by_its_foreign_key_and_floats():
    one = make_destination("one", ROUTING_KEY)
    two = make_destination("two", OTHER_ROUTING_KEY)
    for destination in (one, two):
        RateBudget.objects.create(destination=destination, tokens=20.0, refilled_at=FINISHED)

    update_each_row(
        RateBudget, ("tokens", "refilled_at"), [(one.pk, 0.25, FINISHED), (two.pk, 19.0, FINISHED)]
    )

    assert dict(RateBudget.objects.values_list("destination_id", "tokens")) == {
        one.pk: 0.25,
        two.pk: 19.0,
    }


def test_no_rows_runs_no_statement(django_assert_num_queries):
    with django_assert_num_queries(0):
        update_each_row(Delivery, ("status",), [])
