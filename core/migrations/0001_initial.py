"""Idempotency keys, in the app that owns them since the shared library left `kafka_platform`.

Installations migrated before the move hold the table as `kafka_platform_idempotencyrecord`: it is
renamed, with its content type, so no key in flight is lost and its permissions stay attached. A
new database gets the table created.
"""

import django.core.serializers.json
from django.db import migrations, models

OLD_TABLE = "kafka_platform_idempotencyrecord"


def adopt_or_create(apps, schema_editor):  # type: ignore[no-untyped-def]
    model = apps.get_model("core", "IdempotencyRecord")
    tables = schema_editor.connection.introspection.table_names()
    if model._meta.db_table in tables:
        return
    if OLD_TABLE in tables:
        schema_editor.alter_db_table(model, OLD_TABLE, model._meta.db_table)
        content_type = apps.get_model("contenttypes", "ContentType")
        if not content_type.objects.filter(app_label="core", model="idempotencyrecord").exists():
            content_type.objects.filter(app_label="kafka_platform", model="idempotencyrecord").update(
                app_label="core"
            )
        return
    schema_editor.create_model(model)


def drop(apps, schema_editor):  # type: ignore[no-untyped-def]
    schema_editor.delete_model(apps.get_model("core", "IdempotencyRecord"))


class Migration(migrations.Migration):
    initial = True

    dependencies = [("contenttypes", "0002_remove_content_type_name")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("client", models.CharField(max_length=128)),
                        ("key", models.CharField(max_length=255)),
                        ("scope", models.CharField(max_length=100)),
                        ("fingerprint", models.CharField(max_length=64)),
                        ("state", models.CharField(choices=[("in_flight", "In Flight"), ("completed", "Completed")], max_length=16)),
                        ("locked_until", models.DateTimeField()),
                        ("response_status", models.PositiveSmallIntegerField(null=True)),
                        ("response_body", models.JSONField(encoder=django.core.serializers.json.DjangoJSONEncoder, null=True)),
                        ("response_location", models.CharField(blank=True, max_length=500)),
                        ("created_at", models.DateTimeField(auto_now_add=True, db_index=True)),
                    ],
                    options={
                        "constraints": [models.UniqueConstraint(fields=("client", "scope", "key"), name="idempotency_key_per_client")],
                    },
                ),
            ],
        ),
        # After the state exists, so that `apps` holds the model.
        migrations.RunPython(adopt_or_create, drop),
    ]
