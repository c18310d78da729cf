"""The transactional outbox: record events with the writes they report, publish them after commit.

`record_event` must be called inside the domain's transaction: the event exists exactly when the
change does. `relay_pending` publishes unsent rows in insertion order with the idempotent producer
and marks them sent; rows are claimed with FOR UPDATE SKIP LOCKED, so the bridge's relay thread and
the beat sweep never publish the same row at once. A relay that dies between publishing and
marking publishes those rows again on restart (at-least-once; consumers dedupe by event id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from pydantic import BaseModel

from bridge import codec, signing
from bridge.clients import shared_producer
from bridge.models import OutboxEvent
from bridge.topics import Topic
from core import bulk, correlation, metrics, tracing

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox_event"
RELAY_BATCH = 500
PUBLISH_TIMEOUT_S = 30.0


def record_event(
    *,
    topic: Topic,
    subject: str,
    data: BaseModel | Mapping[str, Any],
    correlation_id: str | None = None,
    event_id: str | None = None,
    actor: str | None = None,
) -> OutboxEvent:
    """Add a CloudEvent for `topic` to the outbox in the caller's transaction.

    Without `correlation_id`, the event carries the one bound for the work in hand (the task's
    or the request's, see core.correlation), else its own id. It carries the trace
    context of the work in hand (core.tracing), so what it causes joins the same trace.

    `data` is the event's model, built by its domain's `events.py`; it is serialised here with
    the codec's rules (money fields as their decimal strings, other numbers with their digits),
    leaving out unset optional (None) fields as the wire format always has.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump(exclude_none=True)
    correlation_id = correlation_id or correlation.current()
    with tracing.recording(topic.name, correlation_id=correlation_id) as trace_context:
        event = codec.build_event(
            event_type=topic.name,
            domain=topic.domain,
            subject=subject,
            data=data,
            correlation_id=correlation_id,
            event_id=event_id,
            actor=actor,
            traceparent=trace_context.traceparent if trace_context else None,
            tracestate=trace_context.tracestate if trace_context else None,
        )
        tracing.annotate(**{"cloudevents.event_id": event["id"], "cloudevents.event_subject": subject})
        value, headers = codec.encode_event(event)
    return bulk.insert(
        OutboxEvent(
            event_id=event["id"],
            topic=topic.name,
            key=subject,
            event_type=topic.name,
            value=value,
            headers=[[k, v.decode()] for k, v in headers],
        )
    )


def relay_pending(*, limit: int = RELAY_BATCH, older_than_s: float = 0.0) -> int:
    """Publish up to `limit` unsent events; returns how many were published."""
    with transaction.atomic():
        rows = OutboxEvent.objects.select_for_update(skip_locked=True).filter(sent_at__isnull=True)
        if older_than_s:
            rows = rows.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than_s))
        batch = list(rows.order_by("id")[:limit])
        if not batch:
            return 0
        producer = shared_producer()
        # Signed here, at publish time, not when recorded: the key is the publishing process's,
        # so a rotated key signs rows recorded before the rotation, and a database row alone
        # (written by anyone who can write to the database) carries no signature to copy.
        futures = [
            producer.send(
                row.topic,
                key=row.key.encode(),
                value=bytes(row.value),
                headers=_signed(row),
            )
            for row in batch
        ]
        producer.flush(timeout=PUBLISH_TIMEOUT_S)
        sent_ids, failed = [], []
        for row, future in zip(batch, futures, strict=True):
            try:
                future.get(timeout=0)
                sent_ids.append(row.id)
            except Exception as exc:  # noqa: BLE001 - any publish error leaves the row for retry
                failed.append((row.id, repr(exc)))
        mark_sent(sent_ids)
        for row_id, error in failed:
            OutboxEvent.objects.filter(id=row_id).update(attempts=F("attempts") + 1, last_error=error)
        if failed:
            logger.warning(
                "outbox relay: %d of %d events not published: %s", len(failed), len(batch), failed[0][1]
            )
    metrics.OUTBOX_PUBLISHED.inc(len(sent_ids))
    return len(sent_ids)


def _signed(row: OutboxEvent) -> codec.Headers:
    """The row's headers with the platform's signature, over the id and type its value carries
    (what the bridge reads back), not the row's columns."""
    value = bytes(row.value)
    event = json.loads(value)
    return signing.signed_headers(
        [(k, v.encode()) for k, v in row.headers],
        topic=row.topic,
        event_id=event["id"],
        event_type=event["type"],
        value=value,
    )


def mark_sent(ids: list[int]) -> None:
    if ids:
        OutboxEvent.objects.filter(id__in=ids).update(sent_at=timezone.now())


def pending_count() -> int:
    return OutboxEvent.objects.filter(sent_at__isnull=True).count()
