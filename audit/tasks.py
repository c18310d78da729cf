"""Celery tasks of the audit domain."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from audit import services
from bridge.codec import Envelope


@shared_task(name="audit.record_event")
def record_event(payload: dict[str, Any]) -> bool:
    return services.audit_event_record(event=Envelope.from_task_payload(payload))
