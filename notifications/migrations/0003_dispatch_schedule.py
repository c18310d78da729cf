"""Schedule the beat task that hands due notifications to workers and resolves lost attempts."""
from __future__ import annotations

from django.db import migrations

TASK = "notifications.dispatch_due"


def schedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=2, period="seconds")
    task_model.objects.get_or_create(
        name="Deliver due notifications",
        # A tick not run within 10 s is dropped: the next one does the same work.
        defaults={"task": TASK, "interval": every, "queue": "notifications", "expire_seconds": 10},
    )


def unschedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_seed_payment_templates"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
