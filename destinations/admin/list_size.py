"""How long a long admin list is, said without counting the whole table on every page.

Django's admin counts the filtered rows (`SELECT COUNT(*)`) on every page of a change list. Over
the delivery log that count grew from 70 to 844 ms between 10 thousand and 1 million rows on
PostgreSQL (`python -m bench scale` measures it); the rest of the page is flat. Large Django
admins replace it, as here, with a count that stops at a bound:

- up to COUNT_CAP rows are counted exactly, on any database and under any filter: the small
  filtered lists an admin reads the number of ("failed", one destination's day) stay exact;
- past it, the unfiltered list on PostgreSQL says "about" the planner's row estimate
  (pg_class.reltuples, kept by autovacuum and ANALYZE), and a filtered list, or SQLite, says
  "more than COUNT_CAP". A filtered estimate from EXPLAIN was not used: for combined filters
  (one destination's failures) the planner multiplies selectivities it takes as independent,
  and can be off many times over, which "about" would present as a figure.

Paging reaches the first COUNT_CAP rows in the list's order (the newest); older rows are reached
by narrowing the list (the date drill-down, a destination, a status), so no page reads deeper
than COUNT_CAP rows either.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils import timezone

# Rows counted exactly; past it the list says "about" or "more than". At 100 rows a page, the
# newest 100 pages.
COUNT_CAP = 10_000


@dataclass(frozen=True)
class ListSize:
    """What is known of a list's length: exact up to the cap, else an estimate or a floor."""

    rows: int  # exact when `exact`, else the estimate (or the cap when there is none)
    exact: bool
    estimated: bool = False

    def words(self, singular: str, plural: str) -> str:
        """'1 delivery', '42 deliveries', 'about 9,800,000 deliveries', 'more than 10,000 …'."""
        if self.exact:
            return f"{self.rows:,} {singular if self.rows == 1 else plural}"
        if self.estimated:
            return f"about {self.rows:,} {plural}"
        return f"more than {COUNT_CAP:,} {plural}"


def capped_count(queryset, cap: int) -> int:
    """The number of rows, counting at most cap + 1 of them (cap + 1 means "more than cap")."""
    # COUNT(*) over a LIMITed subquery: the database stops reading at cap + 1 rows. The order
    # is dropped, since it cannot change how many rows there are.
    return queryset.order_by().values("pk")[: cap + 1].count()


def table_estimate(model, using: str) -> int | None:
    """The planner's row count of the model's table on PostgreSQL, or None (elsewhere, unknown)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [model._meta.db_table]
        )
        row = cursor.fetchone()
    # -1 (PostgreSQL 14+) or 0: never vacuumed nor analysed, so nothing is known.
    if row is None or row[0] <= 0:
        return None
    return int(row[0])


def rounded(number: int) -> int:
    """Two significant figures: the estimate is not precise, and its digits should not say so."""
    digits = len(str(number))
    unit = 10 ** max(digits - 2, 0)
    return round(number / unit) * unit


class BoundedCountPaginator(Paginator):
    """A change list's paginator that counts at most COUNT_CAP + 1 rows (see the module)."""

    @cached_property
    def size(self) -> ListSize:
        queryset = self.object_list
        counted = capped_count(queryset, COUNT_CAP)
        if counted <= COUNT_CAP:
            return ListSize(rows=counted, exact=True)
        if not queryset.query.has_filters():
            estimate = table_estimate(queryset.model, queryset.db)
            if estimate is not None:
                return ListSize(
                    rows=max(rounded(estimate), COUNT_CAP + 1), exact=False, estimated=True
                )
        return ListSize(rows=COUNT_CAP + 1, exact=False)

    @cached_property
    def count(self) -> int:
        # What paging works from: past the cap, pages end at the cap's last row.
        return min(self.size.rows, COUNT_CAP + 1)

    @property
    def words(self) -> str:
        """The list's size in words, for the pagination line and the search's result count."""
        opts = self.object_list.model._meta
        return self.size.words(str(opts.verbose_name), str(opts.verbose_name_plural))

    @property
    def paging_note(self) -> str:
        """Where paging stops, when it does not reach the end of the list."""
        if self.size.exact:
            return ""
        return (
            f"Pages show the first {COUNT_CAP:,} in this order; narrow the list (a date, a "
            "filter, a search) to reach the others."
        )


class LongListAdmin:
    """A ModelAdmin mixin for a list that grows without bound: no page counts it to its end.

    The count is bounded (BoundedCountPaginator); the filters' facet counts, which count each
    choice over the whole list, are never offered; the date drill-down offers the dates from
    the oldest row to today without querying which ones hold rows (the drill-down of Django's
    admin reads the distinct years, months or days of every row in the list).
    """

    paginator = BoundedCountPaginator
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    date_hierarchy_drilldown = False  # django-admin-lightweight-date-hierarchy

    def get_date_hierarchy_drilldown(self, year_lookup, month_lookup):
        """The years since the oldest row, a year's months, a month's days, up to today."""
        today = timezone.localdate()
        if year_lookup is None:
            oldest = (
                self.model._default_manager.order_by(self.date_hierarchy)
                .values_list(self.date_hierarchy, flat=True)
                .first()
            )
            first_year = timezone.localtime(oldest).year if oldest else today.year
            return [date(year, 1, 1) for year in range(first_year, today.year + 1)]
        if month_lookup is None:
            months = [date(year_lookup, month, 1) for month in range(1, 13)]
            return [month for month in months if month <= today]
        last_day = calendar.monthrange(year_lookup, month_lookup)[1]
        days = [date(year_lookup, month_lookup, day) for day in range(1, last_day + 1)]
        return [day for day in days if day <= today]

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        context = getattr(response, "context_data", None) or {}
        paginator = getattr(context.get("cl"), "paginator", None)
        if isinstance(paginator, BoundedCountPaginator) and not paginator.size.exact:
            # Django's "All 10001 selected" would state the capped count as the list's size.
            context["selection_note_all"] = f"All selected: {paginator.words}"
        return response
