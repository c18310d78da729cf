"""Schedule the beat task that releases reservations whose payment never answered (payment_timeout)."""
from __future__ import annotations

from django.db import migrations

TASK = "orders.expire_reservations"


def schedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=5, period="seconds")
    task_model.objects.get_or_create(
        name="Release expired order reservations",
        # A tick not run within 30 s is dropped: the next one does the same work.
        defaults={"task": TASK, "interval": every, "expire_seconds": 30},
    )


def unschedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task=TASK).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
