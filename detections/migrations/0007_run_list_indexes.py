# The detection run log's list, in its order under each filter, served by indexes.

from django.db import migrations, models

from destinations.indexes import AddIndexWithoutLocking


class Migration(migrations.Migration):
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction.
    atomic = False

    dependencies = [
        ("detections", "0006_run_outcome_tally"),
    ]

    operations = [
        AddIndexWithoutLocking(
            model_name="detectionrun",
            index=models.Index(fields=["-ran_at", "-id"], name="run_newest"),
        ),
        AddIndexWithoutLocking(
            model_name="detectionrun",
            index=models.Index(fields=["outcome", "-ran_at", "-id"], name="run_outcome_newest"),
        ),
        AddIndexWithoutLocking(
            model_name="detectionrun",
            index=models.Index(fields=["run_type", "-ran_at", "-id"], name="run_type_newest"),
        ),
    ]
