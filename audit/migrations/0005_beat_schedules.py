"""Schedule the audit beat jobs: sign checkpoints, verify the chain, apply retention."""

from django.db import migrations

TASKS = (
    # name, task, every (seconds)
    ("Sign an audit chain checkpoint", "audit.checkpoint_chain", 60),
    ("Verify the audit chain", "audit.verify_chain", 60 * 60),
    ("Archive and purge expired audit records", "audit.apply_retention", 24 * 60 * 60),
)


def schedule(apps, schema_editor):  # type: ignore[no-untyped-def]
    interval_model = apps.get_model("django_celery_beat", "IntervalSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, seconds in TASKS:
        every, _ = interval_model.objects.get_or_create(every=seconds, period="seconds")
        task_model.objects.get_or_create(
            name=name, defaults={"task": task, "interval": every, "queue": "audit"}
        )


def unschedule(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        task__in=[task for _, task, _ in TASKS]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0004_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
