"""Schedule the daily settlement run; operators edit the schedule in the admin (periodic tasks)."""
from __future__ import annotations

from django.db import migrations


def schedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    crontab_model = apps.get_model("django_celery_beat", "CrontabSchedule")
    task_model = apps.get_model("django_celery_beat", "PeriodicTask")
    nightly, _ = crontab_model.objects.get_or_create(
        minute="0", hour="2", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    task_model.objects.get_or_create(
        name="Settle captured payments", defaults={"task": "payments.run_settlement", "crontab": nightly}
    )


def unschedule(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="payments.run_settlement").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("payments", "0002_simulatedcharge_simulatedrefund_payment_client_and_more"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
