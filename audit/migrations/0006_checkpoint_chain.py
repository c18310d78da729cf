"""Checkpoints form a chain: a gapless `number` and the previous checkpoint's signature, signed.

Existing checkpoints are numbered in the order they were written and re-signed in the new form
with AUDIT_CHECKPOINT_KEY, but only those whose old signature that key verifies: one it does not
verify stays as it was, and `audit_verify` reports it.
"""

import hashlib
import hmac

from django.conf import settings
from django.db import migrations, models


def _old_signature(key, row):  # type: ignore[no-untyped-def]
    from audit import chain

    message = f"{row.kind}:{row.sequence}:{row.record_hash}:{chain.format_time(row.signed_at)}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def chain_existing(apps, schema_editor):  # type: ignore[no-untyped-def]
    from audit import chain

    checkpoint_model = apps.get_model("audit", "ChainCheckpoint")
    key = settings.AUDIT_CHECKPOINT_KEY
    prev = chain.GENESIS_SIGNATURE
    with schema_editor.connection.cursor() as cursor:
        # The append-only trigger refuses UPDATE; this migration alone rewrites the rows.
        cursor.execute("ALTER TABLE audit_chaincheckpoint DISABLE TRIGGER audit_checkpoint_append_only")
    for number, row in enumerate(checkpoint_model.objects.order_by("id").iterator(), start=1):
        row.number = number
        row.prev_signature = prev
        if key and hmac.compare_digest(_old_signature(key, row), row.signature):
            row.signature = chain.sign_checkpoint(
                key,
                number=number,
                kind=row.kind,
                sequence=row.sequence,
                record_hash=row.record_hash,
                signed_at=row.signed_at,
                prev_signature=prev,
            )
        row.save(update_fields=["number", "prev_signature", "signature"])
        prev = row.signature
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_chaincheckpoint ENABLE TRIGGER audit_checkpoint_append_only")


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_beat_schedules")]

    operations = [
        migrations.AddField(
            model_name="chaincheckpoint",
            name="number",
            field=models.BigIntegerField(null=True, help_text="The checkpoint's sequence number."),
        ),
        migrations.AddField(
            model_name="chaincheckpoint",
            name="prev_signature",
            field=models.CharField(default="", max_length=64),
            preserve_default=False,
        ),
        migrations.RunPython(chain_existing, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="chaincheckpoint",
            name="number",
            field=models.BigIntegerField(unique=True, help_text="The checkpoint's sequence number."),
        ),
        migrations.AlterField(
            model_name="chaincheckpoint",
            name="sequence",
            field=models.BigIntegerField(help_text="The last record the checkpoint covers."),
        ),
    ]
