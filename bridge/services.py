"""Operators' actions on the bridge: asking the bridge to skip a stuck partition's record."""

from __future__ import annotations

from django.db import transaction
from django.dispatch import Signal
from django.utils import timezone

from bridge.models import StuckPartition

SKIP_REQUESTED = "kafka_record.skip_requested"

# Sent inside the request's transaction when an operator asks to skip a stuck record; the audit
# app records it there (the bridge knows no domain: audit connects itself from its ready()).
# Keyword arguments: actor, subject (`<topic>@<partition>:<offset>`), details (group, topic,
# partition, offset, error, stuckSince).
skip_requested = Signal()


@transaction.atomic
def stuck_partition_request_skip(*, stuck_id: int, actor: str) -> bool:
    """Ask the bridge that owns the partition to dead-letter its stuck record and move past it.

    Announced in the same transaction (`skip_requested`: the audit app records it). The bridge picks
    the request up within a few seconds; False when it was requested already or is gone.
    """
    stuck = StuckPartition.objects.select_for_update().filter(pk=stuck_id).first()
    if stuck is None or stuck.skip_requested_at is not None:
        return False
    stuck.skip_requested_at = timezone.now()
    stuck.skip_requested_by = actor
    stuck.save(update_fields=["skip_requested_at", "skip_requested_by"])
    subject = f"{stuck.topic}@{stuck.partition}:{stuck.offset}"
    skip_requested.send(
        sender=StuckPartition,
        actor=actor,
        subject=subject,
        details={
            "group": stuck.group,
            "topic": stuck.topic,
            "partition": stuck.partition,
            "offset": stuck.offset,
            "error": stuck.error[:1000],
            "stuckSince": stuck.stuck_since.isoformat(),
        },
    )
    return True
