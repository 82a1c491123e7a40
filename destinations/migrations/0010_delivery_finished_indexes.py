from django.db import migrations, models


class Migration(migrations.Migration):
    """Indexes of finished deliveries: what pruning walks, and each destination's last failure."""

    dependencies = [
        ("destinations", "0009_housekeeping_lease"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                fields=["status", "finished_at", "id"], name="delivery_finished"
            ),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                fields=["destination", "status", "-finished_at", "-id"], name="delivery_failures"
            ),
        ),
    ]
