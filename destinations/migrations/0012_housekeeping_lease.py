import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    """The daily housekeeping's one-row lease, schedule and rollup progress."""

    dependencies = [
        ("destinations", "0011_daily_rollups"),
    ]

    operations = [
        migrations.CreateModel(
            name="Housekeeping",
            fields=[
                ("name", models.CharField(max_length=32, primary_key=True, serialize=False)),
                ("next_run_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("running_until", models.DateTimeField(blank=True, null=True)),
                ("holder", models.CharField(blank=True, max_length=255)),
                ("last_started_at", models.DateTimeField(blank=True, null=True)),
                ("last_finished_at", models.DateTimeField(blank=True, null=True)),
                ("last_result", models.TextField(blank=True)),
                ("rolled_up_at", models.DateTimeField(blank=True, null=True)),
                ("rolled_up_max_id", models.BigIntegerField(default=0)),
            ],
            options={
                "verbose_name_plural": "housekeeping",
            },
        ),
    ]
