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
from kafka import KafkaProducer
from kafka.errors import InvalidTopicError, KafkaError, MessageSizeTooLargeError
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


# Errors that belong to the record, not to the producer: retrying it with another producer would
# fail the same way. Any other failure (a timed-out request, an idempotent producer's broken
# sequence) may have left the producer stuck.
RECORD_ERRORS = (MessageSizeTooLargeError, InvalidTopicError)


class PublishFailed(KafkaError):
    """Rows of a batch the producer failed one by one (each future its own error while the flush
    itself returned), at least one not for the record's own fault: recorded on the rows, which
    stay unsent, and raised after the batch's transaction, so that the caller replaces a producer
    that may be stuck rather than go on with it (seen: after a 30 s broker pause, every batch's
    records expired one by one and the relay kept the same producer for 600 s)."""


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


def relay_pending(
    *, limit: int = RELAY_BATCH, older_than_s: float = 0.0, producer: KafkaProducer | None = None
) -> int:
    """Publish up to `limit` unsent events with `producer` (default: this process's shared one);
    returns how many were published. Raises PublishFailed, once the rows are marked, when a row
    failed for a reason other than its own (RECORD_ERRORS)."""
    with transaction.atomic():
        rows = OutboxEvent.objects.select_for_update(skip_locked=True).filter(sent_at__isnull=True)
        if older_than_s:
            rows = rows.filter(created_at__lt=timezone.now() - timedelta(seconds=older_than_s))
        batch = list(rows.order_by("id")[:limit])
        if not batch:
            return 0
        producer = producer or shared_producer()
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
        sent_ids: list[int] = []
        failed: list[tuple[int, Exception]] = []
        for row, future in zip(batch, futures, strict=True):
            try:
                future.get(timeout=0)
                sent_ids.append(row.id)
            except Exception as exc:  # noqa: BLE001 - any publish error leaves the row for retry
                failed.append((row.id, exc))
        mark_sent(sent_ids)
        for row_id, error in failed:
            OutboxEvent.objects.filter(id=row_id).update(attempts=F("attempts") + 1, last_error=repr(error))
    metrics.OUTBOX_PUBLISHED.inc(len(sent_ids))
    if failed:
        message = f"{len(failed)} of {len(batch)} events not published: {failed[0][1]!r}"
        if any(not isinstance(error, RECORD_ERRORS) for _, error in failed):
            raise PublishFailed(message)
        logger.warning("outbox relay: %s", message)
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
