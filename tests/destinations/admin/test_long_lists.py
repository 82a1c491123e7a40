"""The delivery log and the run log stay as cheap with millions of rows as with ten.

Django's admin counts a whole list on every page; these lists count at most COUNT_CAP + 1 rows
and say "more than" or "about" past it (destinations/admin/list_size.py).
"""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from destinations.admin import list_size
from destinations.models import Delivery, DeliveryKind, DeliveryStatus
from detections.models import DetectionRun
from tests.support.admin_pages import page_text
from tests.support.factories import make_destination, make_detection, record_run
from tests.support.routing_keys import OTHER_ROUTING_KEY, ROUTING_KEY

LOG_URL = reverse("admin:destinations_delivery_changelist")
RUNS_URL = reverse("admin:detections_detectionrun_changelist")
CAP = 5

pytestmark = pytest.mark.django_db


@pytest.fixture
def small_cap(monkeypatch):
    """A cap of 5 rows, so a dozen deliveries are "a long list"."""
    monkeypatch.setattr(list_size, "COUNT_CAP", CAP)


def store_deliveries(destination, count: int, *, start=0, kind=DeliveryKind.TRIGGER, **fields):
    """`count` delivered rows for `destination`, one a minute back from now."""
    now = timezone.now()
    Delivery.objects.bulk_create(
        [
            Delivery(
                destination=destination,
                kind=kind,
                event={"event_action": "trigger", "dedup_key": f"k-{start + n}"},
                dedup_key=f"k-{start + n}",
                status=fields.get("status", DeliveryStatus.DELIVERED),
                created_at=fields.get("created_at", now - timedelta(minutes=start + n)),
            )
            for n in range(count)
        ]
    )


def store_runs(detection, count: int) -> None:
    now = timezone.now()
    DetectionRun.objects.bulk_create(
        [
            DetectionRun(
                detection=detection,
                run_id=f"run-{n}",
                run_type="SCHEDULED",
                outcome="MATCHED",
                match_count=5,
                ran_at=now - timedelta(minutes=n),
                range_start=now - timedelta(minutes=n + 5),
                range_end=now - timedelta(minutes=n),
            )
            for n in range(count)
        ]
    )


def pagination_line(page: str) -> str:
    """The text of the pagination line under the list, spaces collapsed."""
    found = re.search(r'<nav class="paginator".*?</nav>', page, re.S)
    assert found, "no pagination line"
    text = re.sub(r"<[^>]+>", " ", found.group(0))
    return " ".join(text.split())


def counts_of(queries, table: str) -> list[str]:
    """The statements that count rows of `table`."""
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and table in q["sql"]]


@pytest.fixture
def secops(db):
    return make_destination("SecOps on-call", ROUTING_KEY)


def test_a_long_log_says_more_than_the_cap_and_pages_stop_there(admin_client, secops, small_cap):
    store_deliveries(secops, 12)

    page = page_text(admin_client.get(LOG_URL, {"status__exact": "delivered"}))

    line = pagination_line(page)
    assert "more than 5 deliveries" in line
    assert "Pages show the first 5 in this order" in line
    assert "12 deliveries" not in line and "6 deliveries" not in line
    # "Select all" names the list's size as the page does, not the capped number.
    assert "Select all: more than 5 deliveries" in page


def test_a_short_list_is_counted_exactly(admin_client, secops, small_cap):
    store_deliveries(secops, 4)

    line = pagination_line(page_text(admin_client.get(LOG_URL)))

    assert line.endswith("4 deliveries")
    assert "Pages show" not in line


def test_no_page_of_the_log_counts_the_whole_table(admin_client, secops):
    store_deliveries(secops, 30)
    for query in ({}, {"status__exact": "delivered"}, {"destination__id__exact": secops.pk}):
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(LOG_URL, query)
        assert response.status_code == 200
        counts = counts_of(queries.captured_queries, '"destinations_delivery"')
        assert counts, "the list's size was not read at all"
        for sql in counts:
            assert "LIMIT 10001" in sql, f"an unbounded count: {sql}"


def test_no_page_of_the_run_log_counts_the_whole_table(admin_client):
    store_runs(make_detection("Suspicious Login Attempts"), 30)
    with CaptureQueriesContext(connection) as queries:
        assert admin_client.get(RUNS_URL).status_code == 200
    counts = counts_of(queries.captured_queries, '"detections_detectionrun"')
    assert counts and all("LIMIT 10001" in sql for sql in counts), counts


def test_the_run_log_says_more_than_the_cap(admin_client, small_cap):
    store_runs(make_detection("Suspicious Login Attempts"), 12)

    line = pagination_line(page_text(admin_client.get(RUNS_URL)))

    assert "more than 5 detection runs" in line


@pytest.mark.parametrize(
    "url",
    [
        LOG_URL,
        f"{LOG_URL}?status__exact=delivered",
        f"{LOG_URL}?kind__exact=trigger",
        RUNS_URL,
    ],
)
def test_pages_cost_the_same_queries_with_10_or_300_rows(admin_client, secops, url):
    detection = make_detection("Suspicious Login Attempts", secops)

    def queries_of_page() -> int:
        admin_client.get(url)  # warms the session and content types
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get(url).status_code == 200
        return len(queries.captured_queries)

    store_deliveries(secops, 10)
    store_runs(detection, 10)
    with_10 = queries_of_page()
    store_deliveries(secops, 290, start=10)
    DetectionRun.objects.all().delete()
    store_runs(detection, 300)
    assert queries_of_page() == with_10


def test_filters_by_status_kind_destination_and_day(admin_client, secops):
    platform = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    long_ago = timezone.now() - timedelta(days=40)
    store_deliveries(secops, 2, status=DeliveryStatus.FAILED)
    store_deliveries(platform, 3, start=10, kind=DeliveryKind.TEST)
    store_deliveries(platform, 1, start=20, created_at=long_ago)

    def shown(**query) -> str:
        return pagination_line(page_text(admin_client.get(LOG_URL, query)))

    assert shown(status__exact="failed").endswith("2 deliveries")
    assert shown(kind__exact="test").endswith("3 deliveries")
    assert shown(destination__id__exact=str(platform.pk)).endswith("4 deliveries")
    assert shown(destination__id__exact=str(platform.pk), status__exact="failed").endswith(
        "0 deliveries"
    )
    day = timezone.localtime(long_ago)
    assert shown(
        created_at__year=str(day.year),
        created_at__month=str(day.month),
        created_at__day=str(day.day),
    ).endswith("1 delivery")


def test_the_date_drill_down_offers_dates_without_reading_every_row(admin_client, secops):
    long_ago = timezone.now() - timedelta(days=400)
    store_deliveries(secops, 1, created_at=long_ago)
    store_deliveries(secops, 1, start=1)

    with CaptureQueriesContext(connection) as queries:
        page = page_text(admin_client.get(LOG_URL))

    this_year = timezone.localdate().year
    years = re.findall(r"created_at__year=(\d{4})", page)
    assert sorted(set(years)) == [
        str(year) for year in range(timezone.localtime(long_ago).year, this_year + 1)
    ]
    # Django's own drill-down asks for the distinct years (or months, days) of every row.
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]


def test_each_list_filter_has_an_index_in_the_lists_order():
    """The indexes are in the migrations and in the database, each led by its filter."""
    state = MigrationLoader(connection).project_state()
    delivery_indexes = {
        index.name: index.fields
        for index in state.models["destinations", "delivery"].options["indexes"]
    }
    assert delivery_indexes["delivery_newest"] == ["-created_at", "-id"]
    assert delivery_indexes["delivery_status_newest"] == ["status", "-created_at", "-id"]
    assert delivery_indexes["delivery_kind_newest"] == ["kind", "-created_at", "-id"]
    assert delivery_indexes["delivery_recent"] == ["destination", "-created_at"]
    run_indexes = {
        index.name: index.fields
        for index in state.models["detections", "detectionrun"].options["indexes"]
    }
    assert run_indexes["run_newest"] == ["-ran_at", "-id"]
    assert run_indexes["run_outcome_newest"] == ["outcome", "-ran_at", "-id"]
    assert run_indexes["run_type_newest"] == ["run_type", "-ran_at", "-id"]
    with connection.cursor() as cursor:
        stored = connection.introspection.get_constraints(cursor, Delivery._meta.db_table)
    assert stored["delivery_status_newest"]["columns"] == ["status", "created_at", "id"]
    assert stored["delivery_destination_status"]["columns"] == [
        "destination_id",
        "status",
        "created_at",
        "id",
    ]


@pytest.mark.postgres
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the planner's estimate")
def test_on_postgresql_the_unfiltered_log_says_about_the_estimate(admin_client, secops, small_cap):
    store_deliveries(secops, 1234)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE destinations_delivery")

    assert "about 1,200 deliveries" in pagination_line(page_text(admin_client.get(LOG_URL)))
    filtered = pagination_line(page_text(admin_client.get(LOG_URL, {"kind__exact": "trigger"})))
    assert "more than 5 deliveries" in filtered


@pytest.mark.postgres
@pytest.mark.skipif("connection.vendor != 'postgresql'", reason="reads PostgreSQL's plans")
def test_on_postgresql_a_filtered_page_reads_its_index(secops):
    store_deliveries(secops, 50, status=DeliveryStatus.FAILED)
    store_deliveries(secops, 500, start=50)
    page = Delivery.objects.filter(status="failed").order_by("-created_at", "-id")[:100]
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE destinations_delivery")
        # The table is tiny, where reading it whole and sorting is cheapest; the plan for a
        # large one, which cannot sort every failure for one page, is what is asked.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
        plan = page.explain()
    assert "delivery_status_newest" in plan
    assert "Sort" not in plan


def test_a_detections_page_counts_the_deliveries_of_its_newest_runs(admin_client, secops):
    platform = make_destination("Platform on-call", OTHER_ROUTING_KEY)
    detection = make_detection("Suspicious Login Attempts", secops, platform)
    now = timezone.now()
    for n in range(12):
        record_run(detection, f"run-{n:02d}", ran_at=now - timedelta(minutes=n))
    record_run(detection, "run-quiet", match_count=0, ran_at=now + timedelta(minutes=1))

    page = admin_client.get(reverse("admin:detections_detection_change", args=[detection.pk]))

    table = re.search(r'<table class="recent-runs">.*?</table>', page.content.decode(), re.S)
    cells = [
        [
            " ".join(re.sub(r"<[^>]+>", " ", cell).split())
            for cell in re.findall(r"<td>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", table.group(0), re.S)
    ]
    # Run id and deliveries of each row (the header row has no cells).
    rows = [(row[1], row[5]) for row in cells if row]
    # The ten newest, newest first: the run that matched nothing paged nobody.
    assert rows == [("run-quiet", "0")] + [(f"run-{n:02d}", "2") for n in range(9)]
