"""Schedule the beat sweep that publishes outbox rows the relay thread left behind."""
from __future__ import annotations

from django.db import migrations


def schedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = interval_model.objects.get_or_create(every=10, period="seconds")
    task_model.objects.get_or_create(
        name="Publish outbox events left behind",
        defaults={"task": "bridge.sweep_outbox", "interval": every, "queue": "default"},
    )


def unschedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="bridge.sweep_outbox").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("bridge", "0002_outbox_notify_trigger"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
