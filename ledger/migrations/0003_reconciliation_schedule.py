"""Schedule the beat task that reconciles ledger balances with their entries."""
from __future__ import annotations

from django.db import migrations

TASK = "ledger.reconcile_balances"


def schedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=300, period="seconds")
    task_model.objects.get_or_create(
        name="Reconcile ledger balances with entries",
        defaults={"task": TASK, "interval": every, "queue": "ledger"},
    )


def unschedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0002_ledger_invariants"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
