# The delivery log's list, in its order under each filter, served by indexes (bench/scale.py
# measures the pages at 10 thousand and millions of deliveries).

from django.db import migrations, models

from destinations.indexes import AddIndexWithoutLocking


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("destinations", "0009_metrics_tallies"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(fields=["-created_at", "-id"], name="delivery_newest"),
        ),
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(
                fields=["status", "-created_at", "-id"], name="delivery_status_newest"
            ),
        ),
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(fields=["kind", "-created_at", "-id"], name="delivery_kind_newest"),
        ),
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(
                fields=["destination", "status", "-created_at", "-id"],
                name="delivery_destination_status",
            ),
        ),
    ]
