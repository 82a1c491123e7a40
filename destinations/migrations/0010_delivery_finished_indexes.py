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
                condition=models.Q(("status__in", ("delivered", "failed"))),
                fields=["finished_at", "id"],
                name="delivery_finished",
            ),
        ),
        migrations.AddIndex(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(
                    ("status", "failed"),
                    models.Q(
                        ("finished_at__isnull", False), ("status__in", ("pending", "sending"))
                    ),
                    _connector="OR",
                ),
                fields=["destination", "-finished_at", "-id"],
                name="delivery_failures",
            ),
        ),
    ]
