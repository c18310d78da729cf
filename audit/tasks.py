"""Celery tasks of the audit domain: record an event, and the beat jobs (checkpoint, verify,
retention). Thin: each calls one service."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import InterfaceError, OperationalError

from audit import services, task_names
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler

# Verification and retention walk the whole log: they get more time than the global limits.
LONG_SOFT_LIMIT_S = 3 * 60 * 60
LONG_LIMIT_S = LONG_SOFT_LIMIT_S + 300


# A deadlock or a dropped connection succeeds on a retry; anything else is dead-lettered.
@shared_task(  # type: ignore[call-overload]  # celery-types wants an int retry_backoff; seconds may be a float
    name=task_names.RECORD_AUDIT_EVENT,
    base=EventTask,
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=0.5,
    retry_backoff_max=10,
    max_retries=6,
)
def record_event(payload: dict[str, Any]) -> bool:
    return services.audit_event_record(event=Envelope.from_task_payload(payload))


@batch_handler(task_names.RECORD_AUDIT_EVENT)
def record_events(events: list[Envelope]) -> int:
    """A batch the bridge packed: appended under one hold of the chain lock, in one transaction."""
    return services.audit_events_record(events=events)


@shared_task(name=services.CHECKPOINT_TASK)
def checkpoint_chain() -> int | None:
    checkpoint = services.audit_checkpoint_create()
    return checkpoint.sequence if checkpoint else None


@shared_task(name="audit.verify_chain", soft_time_limit=LONG_SOFT_LIMIT_S, time_limit=LONG_LIMIT_S)
def verify_chain() -> dict[str, Any]:
    return services.audit_chain_check().as_dict()


@shared_task(name="audit.apply_retention", soft_time_limit=LONG_SOFT_LIMIT_S, time_limit=LONG_LIMIT_S)
def apply_retention() -> dict[str, Any]:
    result = services.audit_retention_apply()
    return {"archived": result.archived, "segments": result.segments, "stopped": result.stopped}
