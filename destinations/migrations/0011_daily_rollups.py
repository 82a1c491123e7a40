import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Daily per-destination rollups of the delivery log, kept beyond its retention."""

    dependencies = [
        ("destinations", "0010_delivery_list_indexes"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyRollup",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "day",
                    models.DateField(
                        help_text="The local day (TIME_ZONE) the deliveries were created on."
                    ),
                ),
                ("delivered", models.PositiveIntegerField(default=0)),
                ("failed", models.PositiveIntegerField(default=0)),
                (
                    "other",
                    models.PositiveIntegerField(
                        default=0, help_text="Pending or sending, never failed."
                    ),
                ),
                ("tests", models.PositiveIntegerField(default=0)),
                ("pages_delivered", models.PositiveIntegerField(default=0)),
                ("pages_failed", models.PositiveIntegerField(default=0)),
                ("latency", models.JSONField(blank=True, default=dict)),
                (
                    "destination",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="daily_rollups",
                        to="destinations.destination",
                    ),
                ),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("destination", "day"), name="rollup_once_a_day"
                    )
                ],
            },
        ),
        migrations.CreateModel(
            name="RolledUpDay",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("day", models.DateField(unique=True)),
                (
                    "rolled_up_at",
                    models.DateTimeField(help_text="When the rollup read the day's deliveries."),
                ),
                (
                    "unfinished",
                    models.PositiveIntegerField(
                        default=0,
                        help_text="Deliveries still pending or sending then; it is rolled up again.",
                    ),
                ),
            ],
        ),
    ]
