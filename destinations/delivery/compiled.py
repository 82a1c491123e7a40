"""Queries of the worker's claim compiled once and run again with new values.

Compiling a query with the ORM costs the worker more than the database takes to run it: the
claim's select of 8 due rows took 1.5 ms of CPU to build and compile against 0.02 ms to run
(bench: `throughput`, the worker's own thread competing with its sending threads). The SQL is
the ORM's own, compiled once per shape; only the values that change are put in again.
"""

from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from django.db import connection
from django.db.models import Field, Model, QuerySet

# Stand-ins the ORM compiles in place of the values given at each run: a moment and ids no real
# row has, so no constant of a query can be mistaken for one of them.
STAND_IN_MOMENT = datetime(1901, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
STAND_IN_ID = -987_654_321


class CompiledQuery:
    """A values_list() query compiled once; run() executes it with other values in their places.

    `build(*stand_ins)` makes the queryset; each stand-in is prepared by its field as the ORM
    prepares a lookup's value, and found again among the compiled parameters. The rows come back
    through the compiler's own converters, as values_list() would return them.
    """

    def __init__(
        self,
        build: Callable[..., QuerySet],
        *,
        stand_ins: Sequence[object],
        fields: Sequence[Field],
    ) -> None:
        self._fields = list(fields)
        queryset = build(*stand_ins)
        self._compiler = queryset.query.get_compiler(queryset.db)
        self._sql, params = self._compiler.as_sql()
        self._params = list(params)
        self._slots = []
        for stand_in, field in zip(stand_ins, self._fields, strict=True):
            prepared = self._prepare(field, stand_in)
            slots = [i for i, param in enumerate(self._params) if param == prepared]
            if not slots:
                raise ValueError(f"{stand_in!r} is not among the compiled query's parameters")
            self._slots.append(slots)

    @staticmethod
    def _prepare(field: Field, value: object) -> object:
        return field.get_db_prep_value(field.get_prep_value(value), connection, prepared=True)

    def run(self, *values: object) -> list[tuple]:
        """The query's rows with `values` in the stand-ins' places."""
        params = list(self._params)
        for slots, field, value in zip(self._slots, self._fields, values, strict=True):
            prepared = self._prepare(field, value)
            for slot in slots:
                params[slot] = prepared
        with connection.cursor() as cursor:
            cursor.execute(self._sql, params)
            rows = cursor.fetchall()
        return list(self._compiler.results_iter(results=[rows], tuple_expected=True))


def update_each_row(model: type[Model], names: Sequence[str], rows: Sequence[tuple]) -> None:
    """Give each row its own new values of the fields `names`: rows are (pk, *values), in order.

    One statement for all of them, `WITH new (pk, a, …) AS (VALUES …) UPDATE … FROM new`, which
    SQLite and PostgreSQL both run. executemany() sent an UPDATE per row, and the worker writes
    a batch of rows at every claim and every recording: the driver's work for each statement
    cost more than the database's (bench `postgres`). Names come from _meta, quoted by the
    backend, and every value is a parameter prepared by its field. PostgreSQL types a VALUES
    column from its values (a column NULL in every row would be text), so there each value is
    cast to its column's type; SQLite stores what it is given.
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    meta = model._meta
    fields = [meta.pk, *(meta.get_field(name) for name in names)]
    placeholders = [
        f"CAST(%s AS {field.db_type(connection)})" if connection.vendor == "postgresql" else "%s"
        for field in fields
    ]
    row = "(" + ", ".join(placeholders) + ")"
    aliases = [f"v{n}" for n in range(len(fields))]
    table = quote(meta.db_table)
    assignments = ", ".join(
        f"{quote(field.column)} = new.{alias}"
        for field, alias in zip(fields[1:], aliases[1:], strict=True)
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH new ({', '.join(aliases)}) AS (VALUES {', '.join([row] * len(rows))}) "  # noqa: S608
            f"UPDATE {table} SET {assignments} FROM new "
            f"WHERE {table}.{quote(meta.pk.column)} = new.{aliases[0]}",
            _prepared(fields, rows),
        )


def insert_rows(model: type[Model], names: Sequence[str], rows: Sequence[tuple]) -> None:
    """Store new rows of `model` in one INSERT: each row is the values of the fields `names`.

    bulk_create() spent 1.2 ms of CPU on the worker's 8 attempts of a round, building model
    instances and then its statement: more than the rest of the recording together (bench
    `postgres`). The fields left out keep their database defaults (the id, say).
    """
    if not rows:
        return
    quote = connection.ops.quote_name
    fields = [model._meta.get_field(name) for name in names]
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {quote(model._meta.db_table)} "  # noqa: S608
            f"({', '.join(quote(field.column) for field in fields)}) "
            f"VALUES {', '.join([row] * len(rows))}",
            _prepared(fields, rows),
        )


def _prepared(fields: Sequence[Field], rows: Sequence[tuple]) -> list:
    """The rows' values in one list, each prepared by its field as the ORM would save it."""
    return [
        field.get_db_prep_save(value, connection)
        for values in rows
        for field, value in zip(fields, values, strict=True)
    ]
