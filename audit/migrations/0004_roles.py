"""Create the groups `operators` and `auditors` with their permissions (core.roles).

Models added later by other apps are granted by the post-migrate sync (audit.receivers).
"""

from django.db import migrations


def create_roles(apps, schema_editor):  # type: ignore[no-untyped-def]
    from django.contrib.auth.management import create_permissions

    from core import roles

    # Permissions are normally created after all migrations ran; these grants need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    roles.sync_role_groups(
        group_model=apps.get_model("auth", "Group"), permission_model=apps.get_model("auth", "Permission")
    )


def drop_roles(apps, schema_editor):  # type: ignore[no-untyped-def]
    from core import roles

    apps.get_model("auth", "Group").objects.filter(name__in=list(roles.ROLE_PERMISSIONS)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_append_only_triggers"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("payments", "0001_initial"),
        ("bridge", "0003_outbox_sweep_schedule"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create_roles, drop_roles)]
