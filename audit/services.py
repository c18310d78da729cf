"""Audit use cases: store an audit event once."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit.events import AuditRecord
from audit.models import AuditEvent
from bridge.codec import Envelope
from kafka_platform import metrics


def _occurred_at(event: Envelope) -> datetime:
    try:
        return datetime.fromisoformat(event.time)
    except ValueError:
        return timezone.now()


@transaction.atomic
def audit_event_record(*, event: Envelope) -> bool:
    """Store `event` in the audit log; False when its id is already there (a redelivery)."""
    record = AuditRecord.model_validate(event.data)
    _, created = AuditEvent.objects.get_or_create(
        event_id=event.id,
        defaults={
            "event_type": event.type,
            "source": event.source,
            "action": record.action,
            "actor": record.actor,
            "subject_type": record.subjectType or "",
            "subject_id": record.subjectId or event.subject or "",
            "correlation_id": event.correlation_id or "",
            "data": event.data,
            "occurred_at": _occurred_at(event),
            "topic": event.topic or event.type,
            "partition": event.partition,
            "offset": event.offset,
        },
    )
    if created:
        metrics.AUDIT_EVENTS.inc()
    return created
