"""The copy of the chain's checkpoints on audit.checkpoints: read back from Kafka and compared with
the database's, for `audit_verify --kafka` and the scheduled verification.

Someone who can write to the database can delete checkpoints and have a new chain of them signed
over a rewritten log; they cannot take back what was already published. So every checkpoint must
be on the topic exactly as in the database, and the topic must hold nothing the database lacks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from kafka import TopicPartition
from kafka.errors import KafkaError
from pydantic import ValidationError

from audit.events import CheckpointSigned, checkpoint_signed_event
from audit.models import ChainCheckpoint
from bridge import clients, codec, topics
from bridge.models import OutboxEvent

READ_TIMEOUT_S = 60.0
COMPARED_FIELDS = ("kind", "recordSequence", "recordHash", "signedAt", "prevSignature", "signature")


@dataclass
class TopicComparison:
    """What `compare` found: `differences` fail verification, `pending` ones do not yet."""

    database: int = 0
    published: int = 0
    differences: list[str] = field(default_factory=list)
    pending: list[int] = field(default_factory=list)
    # The record the first differing checkpoint covers (an alert's subject), when known.
    first_sequence: int | None = None
    unreadable: str | None = None

    def differ(self, message: str, *, sequence: int | None = None) -> None:
        if not self.differences and self.first_sequence is None:
            self.first_sequence = sequence
        self.differences.append(message)

    @property
    def agrees(self) -> bool:
        return not self.differences


class TopicUnreadable(Exception):
    pass


def read_published(*, timeout_s: float = READ_TIMEOUT_S) -> tuple[list[CheckpointSigned], list[str]]:
    """Every checkpoint on audit.checkpoints, from the beginning to the current end, and a note
    for each record there that is not a checkpoint."""
    name = topics.AUDIT_CHECKPOINTS.name
    try:
        consumer = clients.new_consumer(group_id=None)
    except KafkaError as exc:
        raise TopicUnreadable(f"cannot reach Kafka to read {name}: {exc!r}") from exc
    try:
        partitions = [TopicPartition(name, p) for p in sorted(consumer.partitions_for_topic(name) or ())]
        if not partitions:
            raise TopicUnreadable(f"topic {name} does not exist or has no partitions")
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        published: list[CheckpointSigned] = []
        malformed: list[str] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TopicUnreadable(f"could not read {name} to its end within {timeout_s}s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for r in batch:
                    message = codec.IncomingMessage(
                        tp.topic, tp.partition, r.offset, r.key, r.value, list(r.headers or [])
                    )
                    try:
                        published.append(CheckpointSigned.model_validate(codec.decode(message).data))
                    except (codec.PoisonMessage, ValidationError) as exc:
                        malformed.append(f"{message.fallback_id} is not a checkpoint: {exc}")
        return published, malformed
    finally:
        consumer.close()


def _differing_fields(database: CheckpointSigned, published: CheckpointSigned) -> list[str]:
    ours, theirs = database.model_dump(), published.model_dump()
    return [
        f"{name} {ours[name]!r} != {theirs[name]!r}" for name in COMPARED_FIELDS if ours[name] != theirs[name]
    ]


def compare(
    database: Iterable[ChainCheckpoint], published: Iterable[CheckpointSigned], *, now: datetime | None = None
) -> TopicComparison:
    """Each checkpoint number must be on both sides, once, with the same contents.

    Read the topic before the database: a checkpoint reaches the topic only after its transaction
    committed, so one on the topic that the database lacks was deleted, always. One in the
    database but not on the topic is `pending`, not a difference, while its outbox row is still
    unsent (the relay publishes it within seconds) or it was signed less than
    AUDIT_CHECKPOINT_PUBLISH_GRACE_S ago (published after the topic was read).
    """
    result = TopicComparison()
    grace_start = (now or timezone.now()) - timedelta(seconds=settings.AUDIT_CHECKPOINT_PUBLISH_GRACE_S)
    rows = {c.number: c for c in database}
    ours = {number: checkpoint_signed_event(c) for number, c in rows.items()}
    theirs: dict[int, list[CheckpointSigned]] = {}
    for checkpoint in published:
        copies = theirs.setdefault(checkpoint.sequence, [])
        if checkpoint not in copies:  # the relay publishes at least once: an identical copy is fine
            copies.append(checkpoint)
    result.database, result.published = len(ours), len(theirs)
    unsent = set(
        OutboxEvent.objects.filter(topic=topics.AUDIT_CHECKPOINTS.name, sent_at__isnull=True).values_list(
            "key", flat=True
        )
    )
    for number in sorted(ours.keys() | theirs.keys()):
        copies = theirs.get(number, [])
        if number not in ours:
            result.differ(
                f"checkpoint #{number} is on {topics.AUDIT_CHECKPOINTS.name} but not in the database "
                f"(record #{copies[0].recordSequence}, signature {copies[0].signature})",
                sequence=copies[0].recordSequence,
            )
        elif not copies:
            if str(number) in unsent or rows[number].signed_at > grace_start:
                result.pending.append(number)
            else:
                result.differ(
                    f"checkpoint #{number} (record #{ours[number].recordSequence}) is in the database "
                    f"but not on {topics.AUDIT_CHECKPOINTS.name}",
                    sequence=ours[number].recordSequence,
                )
        elif len(copies) > 1:
            result.differ(
                f"{topics.AUDIT_CHECKPOINTS.name} holds {len(copies)} different checkpoints #{number}: "
                "a checkpoint number was signed twice",
                sequence=ours[number].recordSequence,
            )
        elif fields := _differing_fields(ours[number], copies[0]):
            result.differ(
                f"checkpoint #{number} differs (database != topic): " + "; ".join(fields),
                sequence=ours[number].recordSequence,
            )
    return result


def verify_published(*, timeout_s: float = READ_TIMEOUT_S) -> TopicComparison:
    """Compare the database's checkpoints with audit.checkpoints as it is now.

    A topic that cannot be read is a difference too, and named in `unreadable`: the scheduled
    check tells an outage of Kafka from tampering by it.
    """
    try:
        published, malformed = read_published(timeout_s=timeout_s)
    except TopicUnreadable as exc:
        result = TopicComparison(unreadable=str(exc))
        result.differ(str(exc))
        return result
    result = compare(ChainCheckpoint.objects.order_by("number").iterator(), published)
    result.differences[:0] = malformed
    return result
