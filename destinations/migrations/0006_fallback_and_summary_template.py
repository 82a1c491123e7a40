"""A destination's fallback and summary template; a delivery's link to the one it fell back from."""

import destinations.models
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('destinations', '0005_destination_routing'),
    ]

    operations = [
        migrations.AddField(
            model_name='delivery',
            name='fallback_of',
            field=models.ForeignKey(blank=True, help_text='The failed delivery whose event this one took to the fallback.', null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='fallbacks', to='destinations.delivery'),
        ),
        migrations.AddField(
            model_name='destination',
            name='fallback',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='fallback_for', to='destinations.destination'),
        ),
        migrations.AddField(
            model_name='destination',
            name='summary_template',
            field=models.CharField(blank=True, max_length=1024, validators=[destinations.models.validate_summary_template]),
        ),
    ]
