# The claim's index of due rows holds their id too, so it yields them in the claim's order and
# the claim reads only the rows it takes (claims._in_due_order()). Built and dropped without
# blocking writes, as 0010's.

from django.db import migrations, models

from destinations.indexes import AddIndexWithoutLocking, RemoveIndexWithoutLocking


class Migration(migrations.Migration):
    # CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("destinations", "0014_delivery_incident_unfinished"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(
                fields=["status", "next_attempt_at", "id"], name="delivery_due_in_order"
            ),
        ),
        RemoveIndexWithoutLocking(model_name="delivery", name="delivery_due"),
    ]
