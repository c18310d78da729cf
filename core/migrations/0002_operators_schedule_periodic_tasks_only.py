"""Operators keep view and change of django_celery_beat, losing add and delete.

Installations migrated before core.roles narrowed the grant hold them in the group; the
post-migrate role sync only adds, so this takes them away. (It ran as kafka_platform's 0002 before
the shared library moved to `core`; running it again there changes nothing.)
"""

from django.db import migrations

OPERATORS = "operators"  # core.roles.OPERATORS, frozen here as migrations must be


def revoke_add_and_delete(apps, schema_editor):  # type: ignore[no-untyped-def]
    group = apps.get_model("auth", "Group").objects.filter(name=OPERATORS).first()
    if group is None:
        return
    permission = apps.get_model("auth", "Permission")
    group.permissions.remove(
        *permission.objects.filter(
            content_type__app_label="django_celery_beat", codename__regex=r"^(add|delete)_"
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("core", "0001_initial"),
        ("audit", "0004_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    # Reversing leaves the group as it is: handing operators back the power to create tasks would
    # be a decision, not an undo.
    operations = [migrations.RunPython(revoke_add_and_delete, migrations.RunPython.noop)]
