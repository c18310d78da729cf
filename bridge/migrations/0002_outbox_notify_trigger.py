"""NOTIFY the outbox relay when outbox rows commit (PostgreSQL delivers NOTIFY only on commit)."""
from __future__ import annotations

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION bridge_outbox_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox_event', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER bridge_outbox_notify
AFTER INSERT ON bridge_outboxevent
FOR EACH STATEMENT EXECUTE FUNCTION bridge_outbox_notify();
"""

DROP = """
DROP TRIGGER IF EXISTS bridge_outbox_notify ON bridge_outboxevent;
DROP FUNCTION IF EXISTS bridge_outbox_notify();
"""


class Migration(migrations.Migration):
    dependencies = [("bridge", "0001_initial")]
    operations = [migrations.RunSQL(CREATE, DROP)]
