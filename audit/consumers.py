"""What audit consumes: every `audit.*` input topic (the family, so a new one needs no restart)."""

from __future__ import annotations

from audit import task_names
from audit.events import AuditRecord
from bridge import topics
from bridge.consumers import Consumer

CONSUMERS = [
    Consumer(topics.AUDIT_FAMILY, AuditRecord, task_names.RECORD_AUDIT_EVENT, family=True),
]
