"""Constrain a destination's region to the ones the sender knows."""

from django.db import migrations, models

KNOWN_REGIONS = ["us", "eu"]


def refuse_unknown_regions(apps, schema_editor):
    # The constraint alone would fail with the database's bare "CHECK constraint failed";
    # name the destinations instead, and leave picking their region to the operator.
    Destination = apps.get_model("destinations", "Destination")
    unknown = list(
        Destination.objects.exclude(region__in=KNOWN_REGIONS)
        .order_by("name")
        .values_list("name", "region")
    )
    if unknown:
        listed = ", ".join(f"{name} ({region!r})" for name, region in unknown)
        raise RuntimeError(
            f"{len(unknown)} destination(s) have a region other than us or eu: {listed}. "
            "Set their region in the admin (or with an UPDATE), then migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("destinations", "0003_delivery_resolve_after"),
    ]

    operations = [
        migrations.RunPython(refuse_unknown_regions, migrations.RunPython.noop, elidable=True),
        migrations.AddConstraint(
            model_name="destination",
            constraint=models.CheckConstraint(
                condition=models.Q(("region__in", KNOWN_REGIONS)), name="destination_region_known"
            ),
        ),
    ]
