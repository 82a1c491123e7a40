"""Adding or dropping an index of a table that may hold millions of rows, writes going on."""

from django.db import migrations


def _concurrently(operation, schema_editor, state, app_label: str, *, add: bool) -> None:
    """Add or drop the operation's index CONCURRENTLY, the index as `state` holds it."""
    model = state.apps.get_model(app_label, operation.model_name)
    if operation.allow_migrate_model(schema_editor.connection.alias, model):
        name = getattr(operation, "name", None) or operation.index.name
        index = state.models[app_label, operation.model_name_lower].get_index_by_name(name)
        change = schema_editor.add_index if add else schema_editor.remove_index
        change(model, index, concurrently=True)


class AddIndexWithoutLocking(migrations.AddIndex):
    """AddIndex, built CONCURRENTLY on PostgreSQL (the migration must be `atomic = False`).

    A plain CREATE INDEX blocks every insert and update of the table while it builds: over a
    delivery log of 10 million rows that is tens of seconds in which no run can be recorded and
    the worker cannot mark a delivery sent. SQLite has no such option, and builds it as usual.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return _concurrently(self, schema_editor, to_state, app_label, add=True)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return _concurrently(self, schema_editor, from_state, app_label, add=False)


class RemoveIndexWithoutLocking(migrations.RemoveIndex):
    """RemoveIndex, dropped CONCURRENTLY on PostgreSQL (the migration must be `atomic = False`).

    DROP INDEX takes the same lock as a plain CREATE INDEX until it has dropped it, which waits
    for every transaction reading the table and stops the writes queued behind it meanwhile.
    """

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return _concurrently(self, schema_editor, from_state, app_label, add=False)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor != "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return _concurrently(self, schema_editor, to_state, app_label, add=True)
