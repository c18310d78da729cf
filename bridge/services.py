"""Operators' actions on the bridge: asking the bridge to skip a stuck partition's record."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit.events import audit_record
from bridge import outbox, topics
from bridge.models import StuckPartition

SKIP_REQUESTED = "kafka_record.skip_requested"


@transaction.atomic
def stuck_partition_request_skip(*, stuck_id: int, actor: str) -> bool:
    """Ask the bridge that owns the partition to dead-letter its stuck record and move past it.

    Audited in the same transaction (on the audit domain's own-actions topic). The bridge picks
    the request up within a few seconds; False when it was requested already or is gone.
    """
    stuck = StuckPartition.objects.select_for_update().filter(pk=stuck_id).first()
    if stuck is None or stuck.skip_requested_at is not None:
        return False
    stuck.skip_requested_at = timezone.now()
    stuck.skip_requested_by = actor
    stuck.save(update_fields=["skip_requested_at", "skip_requested_by"])
    subject = f"{stuck.topic}@{stuck.partition}:{stuck.offset}"
    outbox.record_event(
        topic=topics.AUDIT_COMPLIANCE_EVENTS,
        subject=subject,
        actor=actor,
        data=audit_record(
            action=SKIP_REQUESTED,
            subject_type="kafka_record",
            subject_id=subject,
            actor=actor,
            details={
                "group": stuck.group,
                "topic": stuck.topic,
                "partition": stuck.partition,
                "offset": stuck.offset,
                "error": stuck.error[:1000],
                "stuckSince": stuck.stuck_since.isoformat(),
            },
        ),
    )
    return True
