"""Schedule the beat task that compares payments and refunds with the ledger's postings."""
from __future__ import annotations

from django.db import migrations

TASK = "payments.reconcile_ledger"


def schedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=600, period="seconds")
    task_model.objects.get_or_create(
        name="Reconcile payments and refunds with the ledger",
        # A tick not run within 5 minutes is dropped: the next one compares everything again.
        defaults={"task": TASK, "interval": every, "queue": "payments", "expire_seconds": 300},
    )


def unschedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0005_ledgerreconciliation"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
