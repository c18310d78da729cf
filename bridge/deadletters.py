"""Dead letters: records that could not be understood or processed, kept whole for operators."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone
from kafka import TopicPartition

from bridge.clients import new_consumer, shared_producer
from bridge.codec import Headers, IncomingMessage
from bridge.models import DeadLetter
from bridge.topics import dlq_for
from kafka_platform import metrics

logger = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "dlq-"
PUBLISH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class DeadLetterRecord:
    dlq_topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def build_record(msg: IncomingMessage, *, reason: str, error: str, failed_at: datetime) -> DeadLetterRecord:
    """The DLQ record: the original key, value and headers plus the dlq-* headers (CONTRACT §5)."""
    headers = [(k, v) for k, v in msg.headers if not k.startswith(DLQ_HEADER_PREFIX)]
    headers += [
        ("dlq-reason", reason.encode()),
        ("dlq-error", error[:4000].encode()),
        ("dlq-original-topic", msg.topic.encode()),
        ("dlq-original-partition", str(msg.partition).encode()),
        ("dlq-original-offset", str(msg.offset).encode()),
        ("dlq-failed-at", failed_at.isoformat().replace("+00:00", "Z").encode()),
    ]
    return DeadLetterRecord(dlq_for(msg.topic).name, msg.key, msg.value, headers)


def dead_letter(msg: IncomingMessage, *, reason: str, error: str) -> None:
    """Publish `msg` to its domain's DLQ and list it for the admin; raises if either fails.

    The caller commits the message's offset only after this returns, so nothing is lost.
    """
    failed_at = timezone.now()
    record = build_record(msg, reason=reason, error=error, failed_at=failed_at)
    shared_producer().send(record.dlq_topic, key=record.key, value=record.value, headers=record.headers).get(
        timeout=PUBLISH_TIMEOUT_S
    )
    try:
        with transaction.atomic():
            DeadLetter.objects.create(
                dlq_topic=record.dlq_topic,
                original_topic=msg.topic,
                original_partition=msg.partition,
                original_offset=msg.offset,
                key=msg.key,
                value=msg.value,
                headers=[[k, base64.b64encode(v or b"").decode()] for k, v in msg.headers],
                reason=reason,
                error=error,
                failed_at=failed_at,
            )
    except IntegrityError:
        pass  # a redelivered poison message: already listed
    metrics.DLQ_MESSAGES.labels(topic=record.dlq_topic, reason=reason).inc()
    logger.warning(
        "dead letter %s@%s:%s -> %s (%s): %s",
        msg.topic,
        msg.partition,
        msg.offset,
        record.dlq_topic,
        reason,
        error,
    )


def original_headers(dead: DeadLetter) -> Headers:
    return [(k, base64.b64decode(v)) for k, v in dead.headers]


def replay(dead: DeadLetter) -> None:
    """Publish the original record back to its original topic and mark it replayed."""
    publish_original(
        dead.original_topic,
        bytes(dead.key) if dead.key is not None else None,
        bytes(dead.value) if dead.value is not None else None,
        original_headers(dead),
    )
    DeadLetter.objects.filter(pk=dead.pk).update(replayed_at=timezone.now())


def read_dlq(
    topic: str, *, since: datetime | None = None
) -> Iterator[tuple[str, bytes | None, bytes | None, Headers]]:
    """Every record on a DLQ topic up to its current end: (original topic, key, value, headers)."""
    consumer = new_consumer(group_id=None, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        remaining = {tp for tp in partitions if end[tp] > 0}
        while remaining:
            for tp, records in consumer.poll(timeout_ms=1000).items():
                for rec in records:
                    headers = list(rec.headers or [])
                    meta = {k: v.decode() for k, v in headers if k.startswith(DLQ_HEADER_PREFIX)}
                    failed_at = meta.get("dlq-failed-at")
                    if since is None or (failed_at and datetime.fromisoformat(failed_at) >= since):
                        original = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
                        yield meta.get("dlq-original-topic", ""), rec.key, rec.value, original
                    if rec.offset + 1 >= end[tp]:
                        remaining.discard(tp)
    finally:
        consumer.close()


def publish_original(topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
    shared_producer().send(topic, key=key, value=value, headers=headers).get(timeout=PUBLISH_TIMEOUT_S)
