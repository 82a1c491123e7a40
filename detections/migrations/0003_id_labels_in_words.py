# Labels only: the ids read as words ("Detection ID", not "Detection_id"); no schema change.

import uuid
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('detections', '0002_errors_total_and_long_replay_links'),
    ]

    operations = [
        migrations.AlterField(
            model_name='detection',
            name='id',
            field=models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False, verbose_name='detection ID'),
        ),
        migrations.AlterField(
            model_name='detectionrun',
            name='run_id',
            field=models.CharField(max_length=255, unique=True, verbose_name='run ID'),
        ),
        migrations.AlterField(
            model_name='detectionrun',
            name='search_id',
            field=models.CharField(blank=True, max_length=255, verbose_name='search ID'),
        ),
        migrations.AlterField(
            model_name='detectionrun',
            name='trace_id',
            field=models.CharField(blank=True, max_length=255, verbose_name='trace ID'),
        ),
    ]
