"""How changes are kept: django-simple-history's records, attributed to the acting context.

django-simple-history keeps a snapshot of the record's fields per change (and of its many-to-many
choices), works on SQLite and PostgreSQL alike, and takes its user from the request. What it
does not do is written here: attributing changes made outside a request (commands, the API's
token), recording writes that send no signals (QuerySet.update), and one record for a form save
that also sets many-to-many choices (instead of one per step of the save).
"""

import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from django.db import connections, models, transaction
from django.dispatch import receiver
from django.utils import timezone
from simple_history.models import HistoricalRecords
from simple_history.signals import post_create_historical_record, pre_create_historical_record

from .attribution import ADMIN_VIA, current_actor, login_name

# A history record's history_type, as django-simple-history writes them.
CREATED, CHANGED, DELETED = "+", "~", "-"
# The key_change of a record written when the stored key was re-encrypted under the first
# encryption key: the key itself is the same, only its token changed.
REENCRYPTED = "re-encrypted"
_COMMAND_NAME = re.compile(r"[a-z][a-z0-9_]*")
# Rows per INSERT … SELECT of re-encryption records: two parameters each, under SQLite's oldest
# limit of 999 parameters a statement.
_ROWS_PER_INSERT = 250


class KeyChangeRecord(models.Model):
    """What a destination's history record says of its routing key: never the key, nor a token.

    The key column itself is left out of the snapshot; this holds the masked new key (•••• and
    its last 4) when the change set one, REENCRYPTED for a re-encryption, and is blank otherwise.
    """

    key_change = models.CharField("key change", max_length=100, blank=True, default="")

    class Meta:
        abstract = True


class AuditedHistory(HistoricalRecords):
    """Historical records whose user and "via" come from the acting context when there is one."""

    def __init__(self, **options):
        # Wide enough for a long configuration file path; blank rather than NULL when unknown.
        options.setdefault("history_change_reason_field", models.TextField(blank=True, default=""))
        super().__init__(**options)

    def contribute_to_class(self, cls, name):
        super().contribute_to_class(cls, name)
        # Kept on the model, so a record can be written on purpose (record_change below).
        cls._audited_history = self

    def get_history_user(self, instance):
        actor = current_actor()
        if actor is not None and actor.user is not None:
            return actor.user
        return super().get_history_user(instance)

    def get_change_reason_for_object(self, instance, history_type, using):
        explicit = super().get_change_reason_for_object(instance, history_type, using)
        if explicit:
            return explicit
        return current_via()

    def create_historical_record(self, instance, history_type, using=None):
        # The masked key set_routing_key noted is consumed by the one record of that save.
        instance._history_key_change = instance.__dict__.pop("_key_change", "")
        try:
            super().create_historical_record(instance, history_type, using=using)
        finally:
            del instance._history_key_change


@receiver(pre_create_historical_record)
def _fill_key_change(sender, instance, history_instance, **kwargs) -> None:
    if isinstance(history_instance, KeyChangeRecord):
        history_instance.key_change = getattr(instance, "_history_key_change", "")


@receiver(post_create_historical_record)
def _drop_if_nothing_changed(sender, history_instance, **kwargs) -> None:
    """A save that changed nothing (the admin's Save on an untouched form, the second step of
    an apply) is not a change: its record would only hide the ones that are."""
    from .trail import change_lines  # the reading side builds on this module

    if history_instance.history_type != CHANGED or getattr(history_instance, "key_change", ""):
        return
    previous = history_instance.prev_record
    if previous is not None and not change_lines(history_instance, previous):
        # Its many-to-many rows point at it without a database constraint: they go first.
        for field in history_instance._history_m2m_fields:
            getattr(history_instance, field.name).all().delete()
        history_instance.delete()


def current_via() -> str:
    """The words naming how the change in progress is made: the acting block's, else guessed."""
    actor = current_actor()
    if actor is not None:
        return actor.via
    request = getattr(HistoricalRecords.context, "request", None)
    if request is not None:
        match = getattr(request, "resolver_match", None)
        if match is not None and match.app_name == "admin":
            return ADMIN_VIA
        return f"{request.method} {request.path}"
    return _process_via()


def _process_via() -> str:
    """A change made outside any request or command that says who it is (a shell, a script)."""
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    # Only a command's name is repeated: any other argument might be a secret.
    if len(sys.argv) > 1 and _COMMAND_NAME.fullmatch(sys.argv[1]):
        program += f" {sys.argv[1]}"
    return f"{program} (by {login_name()})"


def note_key_change(instance: models.Model, masked_key: str) -> None:
    """Have the next history record of this instance say its key changed to `masked_key`."""
    instance._key_change = masked_key


def record_change(instance: models.Model, history_type: str = CHANGED) -> None:
    """Write one history record of the instance as it is now (with its many-to-many choices)."""
    type(instance)._audited_history.create_historical_record(instance, history_type)


@contextmanager
def recorded_once(instance: models.Model, *, created: bool) -> Iterator[None]:
    """Keep a save and its many-to-many updates inside the block as one history record.

    A form's save writes the row, then clears and adds its many-to-many choices, and each step
    would be a record of its own (the first with the old choices): the trail would show three
    changes where the admin made one.
    """
    instance.skip_history_when_saving = True
    try:
        yield
    finally:
        del instance.skip_history_when_saving
    record_change(instance, CREATED if created else CHANGED)


def update_recorded(queryset: models.QuerySet, **values) -> int:
    """QuerySet.update(), with a history record of each row it changed (update sends no signal).

    Rows that already hold the values are left alone and unrecorded. Returns the rows changed.
    """
    model = queryset.model
    unchanged = models.Q(**values)
    with transaction.atomic():
        targets = queryset.exclude(unchanged)
        pks = list(targets.values_list("pk", flat=True))
        if not pks:
            return 0
        count = model._default_manager.filter(pk__in=pks).update(**values)
        for instance in _for_history(model, pks):
            record_change(instance)
    return count


def record_reencrypted(
    model: type[models.Model], column: str, rows: Sequence[tuple], *, using: str = "default"
) -> None:
    """One history record per row whose secret was re-encrypted: same key, a new token.

    `rows` are (primary key, new token) pairs. A row is recorded only if its `column` holds the
    new token now, so one that an admin rewrote meanwhile (the rotation then left it alone) is
    not claimed. The tokens only select rows: none is written to the trail.
    """
    if not hasattr(model, "_audited_history") or not rows:
        return
    # One INSERT … SELECT per chunk, on purpose: building the history rows through the ORM's
    # bulk_history_create doubled the rotation's time (10,000 values, the rotation test's
    # figure and the bench's rotation.rows_per_s: 3.4 s → 6.6 s on SQLite); this way they cost
    # under 0.2 s of the 2.0 s. The copied columns are the snapshot's own (routing_key is not
    # among them), and every value is a parameter.
    history = model.history.model
    connection = connections[using]
    quote = connection.ops.quote_name
    copied = ", ".join(quote(field.column) for field in history.tracked_fields)
    pk_column, secret_column = quote(model._meta.pk.column), quote(column)
    stamp = ("history_date", "history_type", "history_change_reason", "history_user", "key_change")
    columns = ", ".join(quote(history._meta.get_field(name).column) for name in stamp)
    actor = current_actor()
    user = actor.user.pk if actor is not None and actor.user is not None else None
    now = history._meta.get_field("history_date").get_db_prep_value(
        timezone.now(), connection, prepared=False
    )
    stamped = [now, CHANGED, current_via(), user, REENCRYPTED]
    for start in range(0, len(rows), _ROWS_PER_INSERT):
        chunk = rows[start : start + _ROWS_PER_INSERT]
        marks = ", ".join(["%s"] * len(chunk))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {quote(history._meta.db_table)} ({copied}, {columns}) "  # noqa: S608
                f"SELECT {copied}, %s, %s, %s, %s, %s FROM {quote(model._meta.db_table)} "
                # The primary key finds the rows (its index); the token confirms each one.
                f"WHERE {pk_column} IN ({marks}) AND {secret_column} IN ({marks})",
                [*stamped, *(pk for pk, _ in chunk), *(token for _, token in chunk)],
            )


def _for_history(model: type[models.Model], pks: Iterable) -> models.QuerySet:
    """The rows as the history snapshot reads them: their secrets are not decrypted for it."""
    excluded = model._audited_history.excluded_fields or ()
    return model._default_manager.filter(pk__in=list(pks)).defer(*excluded).order_by("pk")
