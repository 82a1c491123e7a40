"""Reading the audit trail as an admin and as the database holds it."""

import html

from django.db import connection
from django.urls import reverse

from destinations.models import Destination
from detections.models import Detection
from tests.support.leak_guard import find_secrets

# Every table the audit trail writes: the two models' history and the detections' choices.
TRAIL_TABLES = (
    Destination.history.model._meta.db_table,
    Detection.history.model._meta.db_table,
    Detection.history.model.destinations.model._meta.db_table,
)
# Every Fernet token starts so (version byte 0x80, base64).
FERNET_PREFIX = "gAAAAA"


def history_page(client, record) -> str:
    """The text of a record's History page in the admin, HTML entities decoded."""
    opts = record._meta
    url = reverse(f"admin:{opts.app_label}_{opts.model_name}_history", args=[record.pk])
    response = client.get(url)
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def stored_trail_text() -> str:
    """Every row of every audit-trail table, every column, as one text."""
    lines = []
    with connection.cursor() as cursor:
        for table in TRAIL_TABLES:
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            lines += [" | ".join(map(str, row)) for row in cursor.fetchall()]
    return "\n".join(lines)


def assert_trail_holds_no_secret(extra_secrets: set[str] = frozenset()) -> str:
    """Fail if a stored trail row holds a routing key (in any echoed form) or a Fernet token."""
    text = stored_trail_text()
    assert text, "the audit trail is empty"
    assert find_secrets(text) == []
    if extra_secrets:
        assert find_secrets(text, set(extra_secrets)) == []
    assert FERNET_PREFIX not in text
    return text
