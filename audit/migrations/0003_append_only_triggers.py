"""PostgreSQL refuses UPDATE and DELETE on the audit log and its checkpoints.

The one exception: DELETE of audit records in a transaction that ran
`SET LOCAL audit.retention = 'on'` (the retention service, after archiving them).
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND TG_TABLE_NAME = 'audit_auditevent'
       AND current_setting('audit.retention', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'audit records are removed only by the retention service, after archiving';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_append_only
BEFORE UPDATE OR DELETE ON audit_auditevent
FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();

CREATE TRIGGER audit_checkpoint_append_only
BEFORE UPDATE OR DELETE ON audit_chaincheckpoint
FOR EACH ROW EXECUTE FUNCTION audit_refuse_change();
"""

DROP = """
DROP TRIGGER IF EXISTS audit_checkpoint_append_only ON audit_chaincheckpoint;
DROP TRIGGER IF EXISTS audit_append_only ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("audit", "0002_hash_chain_checkpoints_alerts")]
    operations = [migrations.RunSQL(CREATE, DROP)]
