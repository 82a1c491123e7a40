# Indexes of finished deliveries: what pruning walks (and /healthz's and the health page's recent
# deliveries), and each destination's last failure. Built without blocking writes, as 0010's.

from django.db import migrations, models

from destinations.indexes import AddIndexWithoutLocking


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("destinations", "0012_housekeeping_lease"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(fields=["status", "finished_at", "id"], name="delivery_finished"),
        ),
        AddIndexWithoutLocking(
            model_name="delivery",
            index=models.Index(
                fields=["destination", "status", "-finished_at", "-id"], name="delivery_failures"
            ),
        ),
    ]
