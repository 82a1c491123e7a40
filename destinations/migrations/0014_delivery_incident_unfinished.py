# The claim's order-per-incident check reads the incident's unfinished rows alone, not its whole
# history. Built without blocking writes, as 0010's and 0013's.

from django.db import migrations, models

from destinations.indexes import AddIndexWithoutLocking


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("destinations", "0013_delivery_finished_indexes"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(
                fields=["destination", "dedup_key", "id"],
                condition=models.Q(status__in=("pending", "sending")),
                name="delivery_incident_unfinished",
            ),
        ),
    ]
