"""Key rotation: replace a destination's routing key, and re-encrypt secrets under the first key."""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import connections, router, transaction
from django.db.models import Model

from ..audit.attribution import acting, command_via
from ..audit.records import record_reencrypted
from ..models import Destination
from ..pagerduty.errors import UnexpectedFailure
from ..services import TestAlertOutcome, send_test_alert
from . import encryption
from .fields import EncryptedTextField
from .routing import clean_routing_key, mask_routing_key

logger = logging.getLogger("destinations.rotation")

DEFAULT_BATCH_SIZE = 500


class RotationRefused(ValueError):
    """The new routing key was not stored; the sentence says why and that the old key stays."""


@dataclass
class RotationResult:
    """What a routing-key rotation did: fingerprints, the test event and the audit record."""

    destination: Destination
    old_fingerprint: str
    new_fingerprint: str
    test: TestAlertOutcome | None
    log_entry: LogEntry | None

    def summary(self) -> str:
        """A few sentences for the operator, with fingerprints only."""
        name = self.destination.name
        text = (
            f"Rotated the routing key of “{name}”: {self.old_fingerprint} → {self.new_fingerprint}."
        )
        if self.test is None:
            text += (
                " Stored without a test event (--skip-test): PagerDuty has not confirmed the new "
                "key; once it is reachable, run: python manage.py send_test_alert "
                f"{shlex.quote(name)} --resolve"
            )
        else:
            text += f" The new key was tested first. {self.test.summary()}"
        if self.log_entry is None:
            text += (
                " No admin account exists to record this under, so the log line on "
                "destinations.rotation is its only audit record."
            )
        return text


def rotate_routing_key(
    *, destination: Destination, new_key: str, actor: str, skip_test: bool = False
) -> RotationResult:
    """Prove a new routing key with a resolved test event, then store it and record who did it.

    Raises RotationRefused, leaving the old key in place, when the key is malformed, unchanged,
    refused by PagerDuty or could not be tested.
    """
    try:
        new_key = clean_routing_key(new_key)
    except ValidationError as error:
        raise RotationRefused(" ".join(error.messages)) from None
    # None when the stored key cannot be decrypted: replacing it is then the way out.
    old_key = destination.readable_routing_key()
    old_fingerprint = destination.masked_routing_key
    if new_key == old_key:
        raise RotationRefused(
            f"The new key is the key already in use ({old_fingerprint}); nothing changed. "
            "Regenerate the integration key in PagerDuty first."
        )

    test = None
    if not skip_test:
        # Resolved right after it is accepted, so the proof leaves no incident open.
        test = send_test_alert(
            destination=destination,
            sent_by=f"{actor} (command line, key rotation)",
            resolve=True,
            routing_key=new_key,
        )
        if not test.accepted:
            raise RotationRefused(_refusal_sentence(test, old_fingerprint))

    with transaction.atomic(), acting(via=command_via("rotate_routing_key", operator=actor)):
        # Locked so that two rotations (or an admin edit) cannot interleave between the
        # comparison with the key we tested against and the write.
        locked = Destination.objects.select_for_update().defer("routing_key").get(pk=destination.pk)
        if locked.readable_routing_key() != old_key:
            raise RotationRefused(
                f"The routing key of “{destination.name}” was changed by someone else while the "
                f"new key was being tested (it is now {locked.masked_routing_key}); nothing was "
                "stored. Check with them and run the command again."
            )
        locked.set_routing_key(new_key)
        locked.save(update_fields=["routing_key", "routing_key_rotated_at", "updated_at"])
        new_fingerprint = mask_routing_key(new_key)
        how = f"tested: dedup_key {test.dedup_key}" if test else "not tested: --skip-test"
        log_entry = record_key_change(
            destination=locked,
            actor=actor,
            message=(
                f"Rotated the routing key {old_fingerprint} → {new_fingerprint} by {actor} "
                f"(command line, {how})"
            ),
        )
    destination.routing_key = locked.routing_key
    destination.routing_key_rotated_at = locked.routing_key_rotated_at
    destination.updated_at = locked.updated_at
    logger.info(
        "routing_key.rotated destination=%s old=%s new=%s actor=%s tested=%s",
        destination.pk,
        old_fingerprint,
        new_fingerprint,
        actor,
        test.dedup_key if test else "no",
    )
    return RotationResult(
        destination=destination,
        old_fingerprint=old_fingerprint,
        new_fingerprint=new_fingerprint,
        test=test,
        log_entry=log_entry,
    )


def _refusal_sentence(test: TestAlertOutcome, old_fingerprint: str) -> str:
    """Say why PagerDuty did not take the new key, what to check, and that the old key stays."""
    result = test.result
    if isinstance(result.error, UnexpectedFailure):
        # Not PagerDuty's verdict on the key: this server failed, so say so and what to try.
        return (
            f"The new key could not be tested ({result.error.message}). Hint: this is an error "
            "in this server, not PagerDuty's answer; look for delivery.unexpected_failure in the "
            f"log and try again. The old key {old_fingerprint} is still in use."
        )
    if result.status_code is None:
        what = f"PagerDuty could not be reached to test the new key ({result.error.message})"
    else:
        answer = f"{result.status_code}: {result.message}" if result.message else "no message"
        if result.errors:
            answer += f"; {'; '.join(map(str, result.errors))}"
        what = f"PagerDuty refused the new key ({answer})"
    if result.retryable:
        # The delivery hints promise a retry; a rotation is not retried, so say what to do.
        hint = (
            "PagerDuty is unreachable or failing right now: try again later, or, if this server "
            "cannot reach PagerDuty by design, store the key without a test using --skip-test."
        )
    else:
        hint = result.hint
    return f"{what}. Hint: {hint} The old key {old_fingerprint} is still in use."


def record_key_change(*, destination: Destination, actor: str, message: str) -> LogEntry | None:
    """Write an admin history entry for a key change made outside the admin (fingerprints only).

    It is recorded under the operator's own account when one has that username, else under the
    first superuser; the message always names the operator. None when there is no account at all.
    """
    user = audit_user(actor)
    if user is None:
        return None
    return LogEntry.objects.log_actions(
        user.pk, [destination], CHANGE, change_message=message, single_object=True
    )


def audit_user(actor: str) -> AbstractBaseUser | None:
    """The active account named `actor`, else the first active superuser, else None."""
    users = get_user_model()._default_manager.filter(is_active=True)
    return (
        users.filter(**{get_user_model().USERNAME_FIELD: actor}).first()
        or users.filter(is_superuser=True).order_by("pk").first()
    )


@dataclass
class EncryptionRotationReport:
    """Counts of one run over every encrypted value; undecryptable values are named, not shown."""

    check_only: bool = False
    total: int = 0
    checked: int = 0
    current: int = 0
    # Re-encrypted under the first key, or (with check_only) still to be.
    not_current: int = 0
    batches: int = 0
    undecryptable: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One sentence of counts for the operator."""
        if self.check_only:
            return (
                f"{self.checked} encrypted value(s) checked: {self.current} under the first key "
                f"of FIELD_ENCRYPTION_KEYS, {self.not_current} not yet, "
                f"{len(self.undecryptable)} not decryptable. Nothing was changed."
            )
        return (
            f"{self.checked} encrypted value(s) checked: {self.not_current} re-encrypted under the "
            f"first key of FIELD_ENCRYPTION_KEYS, {self.current} already under it, "
            f"{len(self.undecryptable)} not decryptable."
        )


def encrypted_fields() -> Iterator[tuple[type[Model], EncryptedTextField]]:
    """Every EncryptedTextField of every installed model, so a new secret field is rotated too."""
    for model in apps.get_models():
        # Local fields only: a parent's fields live in the parent's table and come with it.
        for model_field in model._meta.local_concrete_fields:
            if isinstance(model_field, EncryptedTextField):
                yield model, model_field


def rotate_encryption_keys(
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    check_only: bool = False,
    progress: Callable[[str], None] | None = None,
) -> EncryptionRotationReport:
    """Re-encrypt every encrypted value under the first key, batch by batch (or only count them).

    Each batch commits on its own, and values already under the first key are skipped, so an
    interrupted run loses nothing and the next run carries on. Values that no key decrypts are
    reported and never written.
    """
    if batch_size < 1:
        raise ValueError("The batch size must be at least 1.")
    encryption.fernet()  # EncryptionKeyError now, before any batch, if the keys are unusable
    report = EncryptionRotationReport(check_only=check_only)
    fields = list(encrypted_fields())
    report.total = sum(_count_values(model, model_field) for model, model_field in fields)
    for model, model_field in fields:
        for batch in _batches(model, model_field, batch_size):
            _rotate_batch(model, model_field, batch, report)
            if progress is not None:
                progress(_progress_line(report))
    logger.info(
        "encryption_keys.%s checked=%d current=%d %s=%d undecryptable=%d batches=%d",
        "checked" if check_only else "rotated",
        report.checked,
        report.current,
        "not_current" if check_only else "reencrypted",
        report.not_current,
        len(report.undecryptable),
        report.batches,
    )
    return report


# The columns are read and written with raw SQL on purpose: the field decrypts in from_db_value on
# every ORM read (values_list included), but rotation must see the stored token itself, so that a
# value no key decrypts can be reported and left byte for byte as it is. Table and column names
# come from _meta and are quoted by the backend; every value is a query parameter.


@dataclass
class _Batch:
    """Stored (pk, token) pairs of one model's column, and the database they came from."""

    alias: str
    rows: list[tuple[object, str]]


def _table_and_columns(
    model: type[Model], model_field: EncryptedTextField, alias: str
) -> tuple[str, str, str]:
    """The quoted table, primary-key column and encrypted column names."""
    quote = connections[alias].ops.quote_name
    return quote(model._meta.db_table), quote(model._meta.pk.column), quote(model_field.column)


def _count_values(model: type[Model], model_field: EncryptedTextField) -> int:
    """How many rows hold a value in this column (the progress lines' total)."""
    alias = router.db_for_write(model)
    table, _, column = _table_and_columns(model, model_field, alias)
    with connections[alias].cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {table} WHERE {column} IS NOT NULL")  # noqa: S608
        return cursor.fetchone()[0]


def _batches(
    model: type[Model], model_field: EncryptedTextField, batch_size: int
) -> Iterator[_Batch]:
    """Yield the stored tokens in pk order, one batch at a time (keyset paging, no OFFSET)."""
    alias = router.db_for_write(model)
    table, pk, column = _table_and_columns(model, model_field, alias)
    select = f"SELECT {pk}, {column} FROM {table} WHERE {column} IS NOT NULL"  # noqa: S608
    last_pk = None
    while True:
        with connections[alias].cursor() as cursor:
            if last_pk is None:
                cursor.execute(f"{select} ORDER BY {pk} LIMIT %s", [batch_size])
            else:
                cursor.execute(
                    f"{select} AND {pk} > %s ORDER BY {pk} LIMIT %s", [last_pk, batch_size]
                )
            rows = cursor.fetchall()
        if not rows:
            return
        yield _Batch(alias=alias, rows=rows)
        last_pk = rows[-1][0]


def _rotate_batch(
    model: type[Model],
    model_field: EncryptedTextField,
    batch: _Batch,
    report: EncryptionRotationReport,
) -> None:
    """Sort one batch into current, re-encryptable and unreadable; write it in one transaction."""
    updates: list[tuple[str, object, str]] = []
    unreadable: list[object] = []
    for pk_value, token in batch.rows:
        if encryption.is_under_first_key(token):
            report.current += 1
            continue
        try:
            rotated = encryption.rotate(token)
        except encryption.DecryptionError:
            unreadable.append(pk_value)
            continue
        report.not_current += 1
        updates.append((rotated, pk_value, token))
    if updates and not report.check_only:
        table, pk, column = _table_and_columns(model, model_field, batch.alias)
        with transaction.atomic(using=batch.alias), connections[batch.alias].cursor() as cursor:
            # Compare-and-set on the old token: a value rewritten meanwhile (an admin edit, which
            # always encrypts under the first key) is newer than ours and must not be overwritten.
            cursor.executemany(
                f"UPDATE {table} SET {column} = %s WHERE {pk} = %s AND {column} = %s",  # noqa: S608
                updates,
            )
            # Kept in the audit trail as a re-encryption, never as a key change: the key is
            # the same; neither token is written there.
            record_reencrypted(
                model, model_field.column, [(pk, new) for new, pk, _ in updates], using=batch.alias
            )
    if unreadable:
        report.undecryptable += _describe(model, model_field, unreadable)
    report.checked += len(batch.rows)
    report.batches += 1


def _describe(model: type[Model], model_field: EncryptedTextField, pks: list[object]) -> list[str]:
    """Name rows by their str() (a destination's name), never by the token they hold."""
    # Every secret of the row is deferred: reading one decrypts it, and it may be unreadable too.
    secrets = [other.name for owner, other in encrypted_fields() if owner is model]
    rows = model._default_manager.filter(pk__in=pks).defer(*secrets).order_by("pk")
    return [f"{model._meta.verbose_name} “{row}” ({model_field.name})" for row in rows]


def _progress_line(report: EncryptionRotationReport) -> str:
    """The running counts after a batch, e.g. "batch 3: 1500/10000 values checked, …"."""
    done = "not under the first key" if report.check_only else "re-encrypted"
    return (
        f"batch {report.batches}: {report.checked}/{report.total} values checked, "
        f"{report.not_current} {done}"
    )
