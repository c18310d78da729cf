"""Dead letters: records that could not be understood or processed, kept whole for operators."""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.dispatch import Signal
from django.utils import timezone
from kafka import TopicPartition
from kafka.errors import MessageSizeTooLargeError

from bridge import signing
from bridge.clients import close_producer, new_consumer, new_producer, shared_producer
from bridge.codec import Headers, IncomingMessage
from bridge.models import DeadLetter, OversizedRecord
from bridge.topics import dlq_for
from core import metrics

logger = logging.getLogger(__name__)

DLQ_HEADER_PREFIX = "dlq-"
PUBLISH_TIMEOUT_S = 30.0
# A reference to a record too large to dead-letter whole carries this much of its value.
REFERENCE_VALUE_BYTES = 64 * 1024
ORIGINAL_SIZE_HEADER = "dlq-original-size"
REPLAYED = "kafka_record.replayed"


@dataclass(frozen=True)
class DeadLetterRecord:
    dlq_topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


def build_record(msg: IncomingMessage, *, reason: str, error: str, failed_at: datetime) -> DeadLetterRecord:
    """The DLQ record: the original key, value and headers plus the dlq-* headers (docs/events.md)."""
    headers = [(k, v) for k, v in msg.headers if not k.startswith(DLQ_HEADER_PREFIX)]
    headers += [
        ("dlq-reason", reason.encode()),
        ("dlq-error", error[:4000].encode()),
        ("dlq-original-topic", msg.topic.encode()),
        ("dlq-original-partition", str(msg.partition).encode()),
        ("dlq-original-offset", str(msg.offset).encode()),
        ("dlq-failed-at", failed_at.isoformat().replace("+00:00", "Z").encode()),
    ]
    return _signed(DeadLetterRecord(dlq_for(msg.topic).name, msg.key, msg.value, headers), msg, reason)


def _signed(record: DeadLetterRecord, msg: IncomingMessage, reason: str) -> DeadLetterRecord:
    """The dead letter with the platform's `dlq-signature` (of its value as published): `dlq_replay`
    replays only what the platform dead-lettered, never a record someone wrote to a DLQ topic."""
    headers = [(k, v) for k, v in record.headers if k != signing.DLQ_SIGNATURE_HEADER]
    sig = signing.dead_letter_signature(
        dlq_topic=record.dlq_topic,
        origin=_origin(msg.topic, msg.partition, msg.offset),
        reason=reason,
        value=record.value or b"",
    )
    return DeadLetterRecord(
        record.dlq_topic, record.key, record.value, [*headers, (signing.DLQ_SIGNATURE_HEADER, sig.encode())]
    )


def _origin(topic: str, partition: object, offset: object) -> str:
    return f"{topic}:{partition}:{offset}"


def dead_letter(msg: IncomingMessage, *, reason: str, error: str, as_reference: bool = False) -> None:
    """Publish `msg` to its domain's DLQ and list it for the admin; raises if either fails.

    A record the producer refuses as too large (or one the caller already knows cannot be handed
    on, `as_reference`) goes to the DLQ as a reference: its headers, the first 64 KiB of its value
    and `dlq-original-size`, its whole value kept in PostgreSQL (OversizedRecord) for replay.
    Without that, a record over the producer's limit could never leave its partition.

    The caller commits the message's offset only after this returns, so nothing is lost.
    """
    failed_at = timezone.now()
    record = build_record(msg, reason=reason, error=error, failed_at=failed_at)
    if not as_reference:
        try:
            _publish(record)
        except MessageSizeTooLargeError as exc:
            logger.warning(
                "dead letter %s@%s:%s too large to publish whole (%s); sending a reference",
                msg.topic,
                msg.partition,
                msg.offset,
                exc,
            )
            as_reference = True
    if as_reference:
        # Kept before the reference is published: a reference never points at nothing.
        _keep_whole(msg, reason=reason)
        size = len(msg.value or b"")
        record = _signed(
            DeadLetterRecord(
                record.dlq_topic,
                record.key,
                (msg.value or b"")[:REFERENCE_VALUE_BYTES],
                [*record.headers, (ORIGINAL_SIZE_HEADER, str(size).encode())],
            ),
            msg,
            reason,
        )
        _publish(record)
    try:
        with transaction.atomic():
            DeadLetter.objects.create(
                dlq_topic=record.dlq_topic,
                original_topic=msg.topic,
                original_partition=msg.partition,
                original_offset=msg.offset,
                key=msg.key,
                value=record.value,
                headers=[[k, base64.b64encode(v or b"").decode()] for k, v in msg.headers],
                reason=reason,
                error=error,
                failed_at=failed_at,
            )
    except IntegrityError:
        pass  # a redelivered poison message: already listed
    metrics.DLQ_MESSAGES.labels(topic=record.dlq_topic, reason=reason).inc()
    logger.warning(
        "dead letter %s@%s:%s -> %s (%s%s): %s",
        msg.topic,
        msg.partition,
        msg.offset,
        record.dlq_topic,
        reason,
        ", as a reference" if as_reference else "",
        error,
    )


def _publish(record: DeadLetterRecord) -> None:
    shared_producer().send(record.dlq_topic, key=record.key, value=record.value, headers=record.headers).get(
        timeout=PUBLISH_TIMEOUT_S
    )


def _keep_whole(msg: IncomingMessage, *, reason: str) -> None:
    OversizedRecord.objects.get_or_create(
        topic=msg.topic,
        partition=msg.partition,
        offset=msg.offset,
        defaults={
            "key": msg.key,
            "headers": [[k, base64.b64encode(v or b"").decode()] for k, v in msg.headers],
            "value": msg.value or b"",
            "size": len(msg.value or b""),
            "reason": reason,
        },
    )


def whole_value(topic: str, partition: int | None, offset: int | None) -> bytes | None:
    """The stored whole value behind a dead-letter reference, or None when there is none."""
    if partition is None or offset is None:
        return None
    stored = OversizedRecord.objects.filter(topic=topic, partition=partition, offset=offset).first()
    return bytes(stored.value) if stored is not None else None


def original_headers(dead: DeadLetter) -> Headers:
    return [(k, base64.b64decode(v)) for k, v in dead.headers]


def replay(dead: DeadLetter, *, actor: str) -> None:
    """Publish the original record back to its original topic and mark it replayed (a reference's
    whole value, from OversizedRecord).

    The record goes out as it was, headers included, never signed anew: an unsigned record stays
    unsigned and is judged again as any other. `actor` (the operator) is audited as the replayer.
    """
    value = whole_value(dead.original_topic, dead.original_partition, dead.original_offset)
    if value is None and dead.value is not None:
        value = bytes(dead.value)
    publish_original(
        dead.original_topic,
        bytes(dead.key) if dead.key is not None else None,
        value,
        original_headers(dead),
    )
    DeadLetter.objects.filter(pk=dead.pk).update(replayed_at=timezone.now())
    audit_replay(
        actor=actor,
        topic=dead.original_topic,
        partition=dead.original_partition,
        offset=dead.original_offset,
        reason=dead.reason,
        via="admin",
    )


# Sent when an operator has put a dead letter back on its topic; the audit app records it (the
# bridge knows no domain: the app that keeps the log connects itself, from its AppConfig.ready).
# Keyword arguments: actor, subject (`<topic>:<partition>:<offset>`), topic, partition, offset,
# reason, via ("admin" or "dlq_replay").
replayed = Signal()


def audit_replay(
    *, actor: str, topic: str, partition: int | None, offset: int | None, reason: str, via: str
) -> None:
    """Announce a replay: the operator who put a dead letter back on its topic."""
    replayed.send(
        sender=DeadLetter,
        actor=actor,
        subject=_origin(topic, partition, offset),
        topic=topic,
        partition=partition,
        offset=offset,
        reason=reason,
        via=via,
    )


def read_dlq(
    topic: str, *, since: datetime | None = None
) -> Iterator[tuple[str, bytes | None, bytes | None, Headers, dict[str, str]]]:
    """Every record the platform dead-lettered on a DLQ topic up to its current end: (original
    topic, key, value, original headers, the dlq-* headers)."""
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
                    if not _dead_lettered_here(rec.topic, rec.value or b"", headers, meta):
                        logger.warning(
                            "not replaying %s@%s:%s: no valid %s (not dead-lettered by this platform)",
                            rec.topic,
                            rec.partition,
                            rec.offset,
                            signing.DLQ_SIGNATURE_HEADER,
                        )
                    elif since is None or (failed_at and datetime.fromisoformat(failed_at) >= since):
                        original = [(k, v) for k, v in headers if not k.startswith(DLQ_HEADER_PREFIX)]
                        value = rec.value
                        if ORIGINAL_SIZE_HEADER in meta:  # a reference: the whole value is in PostgreSQL
                            value = _referenced_value(meta)
                            if value is None:
                                logger.warning("dead-letter reference without a stored value: %s", meta)
                                continue
                        yield meta.get("dlq-original-topic", ""), rec.key, value, original, meta
                    if rec.offset + 1 >= end[tp]:
                        remaining.discard(tp)
    finally:
        consumer.close()


def _dead_lettered_here(dlq_topic: str, value: bytes, headers: Headers, meta: dict[str, str]) -> bool:
    origin = _origin(
        meta.get("dlq-original-topic", ""),
        meta.get("dlq-original-partition", ""),
        meta.get("dlq-original-offset", ""),
    )
    return signing.dead_letter_verifies(
        dlq_topic=dlq_topic,
        origin=origin,
        reason=meta.get("dlq-reason", ""),
        value=value,
        header=signing.header_value(headers, signing.DLQ_SIGNATURE_HEADER),
    )


def _referenced_value(meta: dict[str, str]) -> bytes | None:
    try:
        partition, offset = int(meta["dlq-original-partition"]), int(meta["dlq-original-offset"])
    except (KeyError, ValueError):
        return None
    return whole_value(meta.get("dlq-original-topic", ""), partition, offset)


def publish_original(topic: str, key: bytes | None, value: bytes | None, headers: Headers) -> None:
    """Publish a record to `topic`. A replayed reference's value may exceed the shared producer's
    limit (that is why it was a reference): such a record gets a producer sized for it, and the
    broker's own limit (the topic's max.message.bytes) still applies."""
    size = len(value or b"") + len(key or b"") + sum(len(k) + len(v or b"") for k, v in headers)
    if size + REFERENCE_VALUE_BYTES <= settings.KAFKA_MAX_REQUEST_BYTES:
        shared_producer().send(topic, key=key, value=value, headers=headers).get(timeout=PUBLISH_TIMEOUT_S)
        return
    producer = new_producer(max_request_size=size + REFERENCE_VALUE_BYTES, buffer_memory=2 * size + 33554432)
    try:
        producer.send(topic, key=key, value=value, headers=headers).get(timeout=PUBLISH_TIMEOUT_S)
    finally:
        close_producer(producer, timeout=5)
