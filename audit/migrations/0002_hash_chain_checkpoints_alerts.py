"""The hash chain (sequence, prev_hash, hash), signed checkpoints and compliance alerts.

Records stored before this migration are linked into the chain in insertion order.
"""

import uuid

import django.db.models.deletion
import django.db.models.fields.json
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

import core.codec


def link_existing(apps, schema_editor):  # type: ignore[no-untyped-def]
    from audit import chain

    AuditEvent = apps.get_model("audit", "AuditEvent")
    prev = chain.GENESIS_HASH
    for sequence, row in enumerate(AuditEvent.objects.order_by("id").iterator(chunk_size=2000), start=1):
        row.sequence = sequence
        row.prev_hash = prev
        row.data = chain.normalize_json(row.data)
        content = {
            "sequence": sequence,
            "eventId": row.event_id,
            "type": row.event_type,
            "source": row.source,
            "action": row.action,
            "actor": row.actor,
            "subjectType": row.subject_type,
            "subjectId": row.subject_id,
            "correlationId": row.correlation_id,
            "data": row.data,
            "occurredAt": chain.format_time(row.occurred_at),
            "recordedAt": chain.format_time(row.recorded_at),
            "topic": row.topic,
            "partition": row.partition,
            "offset": row.offset,
        }
        row.hash = prev = chain.link_hash(prev, content)
        row.save(update_fields=["sequence", "prev_hash", "hash", "data"])


class Migration(migrations.Migration):

    dependencies = [
        ("audit", "0001_initial"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="auditevent",
            name="sequence",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="auditevent",
            name="prev_hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="auditevent",
            name="hash",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.AlterField(
            model_name="auditevent",
            name="recorded_at",
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.RunPython(link_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="auditevent",
            name="sequence",
            field=models.BigIntegerField(unique=True),
        ),
        migrations.AlterModelOptions(
            name="auditevent",
            options={"ordering": ["sequence"]},
        ),
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                django.db.models.fields.json.KT("data__details__userId"),
                models.F("occurred_at"),
                condition=models.Q(("action", "payment.requested")),
                name="audit_payment_user_time_idx",
            ),
        ),
        migrations.CreateModel(
            name="ChainCheckpoint",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=[("checkpoint", "Checkpoint"), ("anchor", "Anchor")], max_length=16)),
                ("sequence", models.BigIntegerField()),
                ("record_hash", models.CharField(max_length=64)),
                ("signed_at", models.DateTimeField()),
                ("signature", models.CharField(max_length=64)),
                ("archive", models.CharField(blank=True, help_text="Archive file of an anchor.", max_length=255)),
            ],
            options={
                "ordering": ["-sequence", "-id"],
                "indexes": [models.Index(fields=["kind", "-sequence"], name="audit_checkpoint_kind_seq_idx")],
            },
        ),
        migrations.CreateModel(
            name="ComplianceAlert",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("alert_id", models.UUIDField(default=uuid.uuid4, editable=False, unique=True)),
                ("rule", models.CharField(db_index=True, max_length=64)),
                ("severity", models.CharField(choices=[("low", "Low"), ("medium", "Medium"), ("high", "High"), ("critical", "Critical")], max_length=16)),
                ("status", models.CharField(choices=[("open", "Open"), ("acknowledged", "Acknowledged"), ("resolved", "Resolved")], db_index=True, default="open", max_length=16)),
                ("subject", models.CharField(db_index=True, max_length=255)),
                ("details", models.JSONField(decoder=core.codec.EventJSONDecoder, default=dict, encoder=core.codec.EventJSONEncoder)),
                ("dedupe_key", models.CharField(blank=True, max_length=255, null=True, unique=True)),
                ("observed_at", models.DateTimeField(help_text="When the observed behaviour happened.")),
                ("source_event_id", models.CharField(blank=True, max_length=255)),
                ("correlation_id", models.CharField(blank=True, max_length=255)),
                ("raised_at", models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ("acknowledged_at", models.DateTimeField(blank=True, null=True)),
                ("acknowledged_by", models.CharField(blank=True, max_length=255)),
                ("resolved_at", models.DateTimeField(blank=True, null=True)),
                ("resolved_by", models.CharField(blank=True, max_length=255)),
                ("notes", models.TextField(blank=True)),
                ("assignee", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name="+", to=settings.AUTH_USER_MODEL)),
            ],
            options={
                "ordering": ["-raised_at", "-id"],
                "indexes": [models.Index(fields=["rule", "subject", "observed_at"], name="audit_alert_rule_subj_idx")],
            },
        ),
    ]
