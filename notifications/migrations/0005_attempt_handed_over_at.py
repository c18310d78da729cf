from django.db import migrations, models


class Migration(migrations.Migration):
    """`handed_over_at`: a lost attempt without it was never sent. Attempts still `sending` from
    before it existed may have left: they count as handed over, as they did."""

    dependencies = [
        ("notifications", "0004_ownership_and_endpoint_secrets"),
    ]

    operations = [
        migrations.AddField(
            model_name="deliveryattempt",
            name="handed_over_at",
            field=models.DateTimeField(
                blank=True,
                help_text="When the message went to a provider that does not deduplicate (written before "
                "the call): a lost attempt without it was never sent.",
                null=True,
            ),
        ),
        migrations.RunSQL(
            "UPDATE notifications_deliveryattempt SET handed_over_at = started_at WHERE status = 'sending'",
            migrations.RunSQL.noop,
        ),
    ]
