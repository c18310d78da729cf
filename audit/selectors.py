"""Reading the audit log: filtered queries for auditors, and verification of the hash chain."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from audit import archive, chain
from audit.models import AuditEvent, ChainCheckpoint, CheckpointKind
from bridge import topics
from bridge.models import OutboxEvent

VERIFY_CHUNK = 2000


# --- queries ---------------------------------------------------------------------------------------


def audit_event_list(
    *,
    event_type: str | None = None,
    action: str | None = None,
    subject_type: str | None = None,
    subject_id: str | None = None,
    actor: str | None = None,
    source: str | None = None,
    topic: str | None = None,
    correlation_id: str | None = None,
    occurred_after: datetime | None = None,
    occurred_before: datetime | None = None,
) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.all()
    exact = {
        "event_type": event_type,
        "action": action,
        "subject_type": subject_type,
        "subject_id": subject_id,
        "actor": actor,
        "source": source,
        "topic": topic,
        "correlation_id": correlation_id,
    }
    events = events.filter(**{name: value for name, value in exact.items() if value})
    if occurred_after is not None:
        events = events.filter(occurred_at__gte=occurred_after)
    if occurred_before is not None:
        events = events.filter(occurred_at__lt=occurred_before)
    return events


# --- verification ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChainBreak:
    """The first place the chain does not hold; `sequence` names the first bad record."""

    reason: str
    sequence: int | None
    message: str
    event_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "eventId": self.event_id,
            "reason": self.reason,
            "message": self.message,
        }


@dataclass
class ChainReport:
    records: int = 0
    first_sequence: int | None = None
    last_sequence: int | None = None
    head_hash: str = chain.GENESIS_HASH
    anchor_sequence: int = 0
    checkpoints: int = 0
    archived_records: int = 0
    broken: ChainBreak | None = None
    notes: list[str] = field(default_factory=list)
    # What the comparison with audit.checkpoints found, when one was made.
    published: dict[str, Any] | None = None

    @property
    def intact(self) -> bool:
        return self.broken is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "records": self.records,
            "firstSequence": self.first_sequence,
            "lastSequence": self.last_sequence,
            "headHash": self.head_hash,
            "anchorSequence": self.anchor_sequence,
            "checkpoints": self.checkpoints,
            "archivedRecords": self.archived_records,
            "firstBadRecord": self.broken.as_dict() if self.broken else None,
        } | ({"kafka": self.published} if self.published is not None else {})


def _checkpoint_signature_valid(checkpoint: ChainCheckpoint) -> bool:
    return chain.checkpoint_signature_valid(
        settings.AUDIT_CHECKPOINT_KEY,
        checkpoint.signature,
        number=checkpoint.number,
        kind=checkpoint.kind,
        sequence=checkpoint.sequence,
        record_hash=checkpoint.record_hash,
        signed_at=checkpoint.signed_at,
        prev_signature=checkpoint.prev_signature,
    )


def _walk(
    report: ChainReport,
    documents: Iterable[tuple[dict[str, Any], str, str]],
    *,
    after_sequence: int,
    after_hash: str,
    vouched: Callable[[int], str | None] = lambda sequence: None,
) -> tuple[int, str]:
    """Follow the links of (content, prevHash, hash) triples; returns the last sequence and hash.

    `vouched(sequence)` is the hash a signed checkpoint vouches for at that record, if any.
    Stops at the first bad record and sets `report.broken`.
    """
    expected, prev = after_sequence + 1, after_hash
    for content, prev_hash, stored_hash in documents:
        sequence = content["sequence"]
        event_id = content.get("eventId")
        if sequence != expected:
            report.broken = ChainBreak(
                "missing_records",
                sequence,
                f"record #{sequence} follows #{expected - 1}: records #{expected}..#{sequence - 1} "
                "are missing",
                event_id,
            )
            break
        if prev_hash != prev:
            report.broken = ChainBreak(
                "broken_link",
                sequence,
                f"record #{sequence} links to {prev_hash}, but the record before it hashes to {prev}",
                event_id,
            )
            break
        computed = chain.link_hash(prev, content)
        if computed != stored_hash:
            report.broken = ChainBreak(
                "content_altered",
                sequence,
                f"record #{sequence} hashes to {computed}, not its stored {stored_hash}: "
                "its content was altered",
                event_id,
            )
            break
        vouched_hash = vouched(sequence)
        if vouched_hash is not None and vouched_hash != stored_hash:
            report.broken = ChainBreak(
                "checkpoint_mismatch",
                sequence,
                f"record #{sequence} hashes to {stored_hash}, but a signed checkpoint vouches for "
                f"{vouched_hash}: the chain was rewritten",
                event_id,
            )
            break
        report.records += 1
        if report.first_sequence is None:
            report.first_sequence = sequence
        expected, prev = sequence + 1, stored_hash
    return expected - 1, prev


def _row_triples(rows: Iterable[AuditEvent]) -> Iterator[tuple[dict[str, Any], str, str]]:
    for row in rows:
        yield row.content(), row.prev_hash, row.hash


def verify_segment(
    rows: Iterable[AuditEvent], *, after_sequence: int, after_hash: str, through_sequence: int
) -> ChainReport:
    """Check that `rows` are exactly records #after_sequence+1..#through_sequence, linked from
    `after_hash`."""
    report = ChainReport()
    last_sequence, last_hash = _walk(
        report, _row_triples(rows), after_sequence=after_sequence, after_hash=after_hash
    )
    if report.broken is None and last_sequence != through_sequence:
        report.broken = ChainBreak(
            "missing_records",
            last_sequence + 1,
            f"records #{last_sequence + 1}..#{through_sequence} are missing",
        )
    report.last_sequence, report.head_hash = last_sequence, last_hash
    return report


class _Vouchers:
    """The hashes checkpoints vouch for, as (sequence, hash) pairs in ascending sequence order,
    looked up while streaming the records."""

    def __init__(self, vouchers: Iterable[tuple[int, str]]) -> None:
        self._vouchers = iter(vouchers)
        self._next = next(self._vouchers, None)

    def __call__(self, sequence: int) -> str | None:
        while self._next is not None and self._next[0] < sequence:
            self._next = next(self._vouchers, None)
        return self._next[1] if self._next is not None and self._next[0] == sequence else None


def _where(checkpoint: ChainCheckpoint) -> str:
    return f"{checkpoint.kind} #{checkpoint.number} (at record #{checkpoint.sequence})"


def _forged(checkpoint: ChainCheckpoint) -> ChainBreak | None:
    if _checkpoint_signature_valid(checkpoint):
        return None
    return ChainBreak(
        "bad_signature",
        checkpoint.sequence,
        f"{_where(checkpoint)} has an invalid signature: it was not made with AUDIT_CHECKPOINT_KEY",
    )


def _checkpoint_break(checkpoint: ChainCheckpoint, *, previous: ChainCheckpoint | None) -> ChainBreak | None:
    """Whether `checkpoint` is the one after `previous` (None: the first), links to its signature
    and was signed with the key."""
    expected = previous.number + 1 if previous else 1
    prev_signature = previous.signature if previous else chain.GENESIS_SIGNATURE
    if checkpoint.number != expected:
        return ChainBreak(
            "checkpoint_gap",
            checkpoint.sequence,
            f"{_where(checkpoint)} follows checkpoint #{expected - 1}: checkpoints "
            f"#{expected}..#{checkpoint.number - 1} are missing",
        )
    if checkpoint.prev_signature != prev_signature:
        return ChainBreak(
            "checkpoint_unlinked",
            checkpoint.sequence,
            f"{_where(checkpoint)} links to signature {checkpoint.prev_signature}, but checkpoint "
            f"#{expected - 1} is signed {prev_signature}: the checkpoints were rewritten",
        )
    return _forged(checkpoint)


def _checkpoints_break(checkpoints: Iterable[ChainCheckpoint]) -> ChainBreak | None:
    """The first checkpoint, in number order, that breaks the checkpoints' chain."""
    previous = None
    for checkpoint in checkpoints:
        broken = _checkpoint_break(checkpoint, previous=previous)
        if broken is not None:
            return broken
        previous = checkpoint
    return None


def _latest_checkpoint_break(latest: ChainCheckpoint) -> ChainBreak | None:
    """The newest checkpoint's own number, link and signature (what signing the next one needs)."""
    previous = ChainCheckpoint.objects.filter(number=latest.number - 1).first()
    if previous is None and latest.number > 1:
        return ChainBreak(
            "checkpoint_gap",
            latest.sequence,
            f"{_where(latest)} follows no checkpoint #{latest.number - 1}: it is missing",
        )
    return _checkpoint_break(latest, previous=previous)


def _unanchored(*, now: datetime) -> ChainBreak | None:
    """The oldest record no checkpoint covers, when it has waited longer than
    AUDIT_CHECKPOINT_MAX_AGE_S: beat signs one a minute, so the checkpoints stopped, were deleted,
    or the records were written past them."""
    max_age_s = settings.AUDIT_CHECKPOINT_MAX_AGE_S
    newest = ChainCheckpoint.objects.order_by("-sequence", "-number").first()
    covered = newest.sequence if newest else 0
    oldest = AuditEvent.objects.filter(sequence__gt=covered).order_by("sequence").first()
    if oldest is None or oldest.recorded_at >= now - timedelta(seconds=max_age_s):
        return None
    where = (
        f"the newest checkpoint (#{newest.number}, signed {chain.format_time(newest.signed_at)}) "
        f"covers records up to #{newest.sequence}"
        if newest
        else "there is no checkpoint at all: they were deleted (a log is signed within a minute)"
    )
    return ChainBreak(
        "stale_checkpoint" if newest else "no_checkpoint",
        oldest.sequence,
        f"record #{oldest.sequence}, recorded {chain.format_time(oldest.recorded_at)}, is more than "
        f"AUDIT_CHECKPOINT_MAX_AGE_S={max_age_s}s old and no signed checkpoint covers it; {where}",
        oldest.event_id,
    )


# The outbox rows of audit.checkpoints (each checkpoint's copy, written in its own transaction)
# whose checkpoint the database no longer holds with the same signature; one statement, so the
# checkpoints and the outbox are read in one snapshot and a checkpoint being signed cannot race it.
_OUTBOX_ORPHANS_SQL = f"""
SELECT o.key, o.value
FROM {OutboxEvent._meta.db_table} o
WHERE o.topic = %(topic)s {{newest}}
  AND NOT EXISTS (
    SELECT 1 FROM {ChainCheckpoint._meta.db_table} c
    WHERE c.number = o.key::bigint
      AND c.signature = convert_from(o.value, 'UTF8')::jsonb #>> '{{{{data,signature}}}}'
  )
ORDER BY o.id
LIMIT 1
"""  # noqa: S608 - the table names are ours
_NEWEST_ONLY = f"AND o.id = (SELECT max(id) FROM {OutboxEvent._meta.db_table} WHERE topic = %(topic)s)"  # noqa: S608


def _outbox_break(*, newest_only: bool) -> ChainBreak | None:
    """A checkpoint published through the outbox that the database lacks or holds differently.

    Deleting the newest checkpoint together with the records it covered leaves a chain that is
    consistent in itself; the outbox row written with that checkpoint still names it, unless it
    was deleted too (then only audit.checkpoints can tell). `newest_only`: the newest row alone,
    which is what the signer needs before it numbers the next checkpoint.
    """
    sql = _OUTBOX_ORPHANS_SQL.format(newest=_NEWEST_ONLY if newest_only else "")
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, {"topic": topics.AUDIT_CHECKPOINTS.name})
            orphan = cursor.fetchone()
    except DatabaseError as exc:
        return ChainBreak(
            "checkpoint_deleted",
            None,
            f"an outbox row of {topics.AUDIT_CHECKPOINTS.name} is no checkpoint: {exc}",
        )
    if orphan is None:
        return None
    number, value = orphan
    data = json.loads(bytes(value))["data"]
    sequence = data.get("recordSequence")
    return ChainBreak(
        "checkpoint_deleted",
        sequence,
        f"checkpoint #{number} (at record #{sequence}, signature {data.get('signature')}) was signed "
        f"and published to {topics.AUDIT_CHECKPOINTS.name}, but the database does not hold it with "
        "that signature: it was deleted or replaced, with the records it covered",
    )


def verify_chain(*, since_last_checkpoint: bool = False, now: datetime | None = None) -> ChainReport:
    """Check the whole chain in the database, or only what follows the latest checkpoint.

    Checks the checkpoints' own chain (numbers without gaps, each linked to the previous one's
    signature, each signature made with the key: all of them, or only the newest and the anchor),
    every record's sequence, link and hash from the retention anchor on, that each checkpointed
    record still has the hash its checkpoint vouches for, that no checkpoint vouches for a record
    beyond the chain's end (a truncated tail), and that no record has waited longer than
    AUDIT_CHECKPOINT_MAX_AGE_S (at `now`) for a checkpoint. Since the last checkpoint, that last
    rule applies only when there is no checkpoint at all: signing one heals a late checkpoint,
    but must not start a new chain over records whose checkpoints were deleted. Last, that every
    checkpoint the outbox published is still in the database as signed (since the last
    checkpoint: the newest one published), so a deleted newest checkpoint is not signed over
    again. Streams records and checkpoints: memory stays flat however long the log.
    """
    report = ChainReport()
    now = now or timezone.now()
    checkpoints = ChainCheckpoint.objects.all()
    anchor = checkpoints.filter(kind=CheckpointKind.ANCHOR).order_by("-sequence", "-id").first()
    heads = checkpoints.filter(kind=CheckpointKind.CHECKPOINT, sequence__gt=anchor.sequence if anchor else 0)
    latest = heads.order_by("-sequence", "-id").first()
    newest = checkpoints.order_by("-number").first()
    report.checkpoints = checkpoints.count()
    if since_last_checkpoint:
        report.broken = _latest_checkpoint_break(newest) if newest else _unanchored(now=now)
        if report.broken is None and anchor is not None:
            report.broken = _forged(anchor)
    else:
        report.broken = _checkpoints_break(checkpoints.order_by("number").iterator(chunk_size=VERIFY_CHUNK))
    if report.broken is not None:
        return report

    start_sequence, start_hash = (anchor.sequence, anchor.record_hash) if anchor else (0, chain.GENESIS_HASH)
    report.anchor_sequence = start_sequence
    below = AuditEvent.objects.filter(sequence__lte=start_sequence).order_by("sequence").first()
    if below is not None:
        report.broken = ChainBreak(
            "below_anchor",
            below.sequence,
            f"record #{below.sequence} is at or before the retention anchor at #{start_sequence}, "
            "whose records were archived and purged",
            below.event_id,
        )
        return report

    vouched = _Vouchers(
        heads.order_by("sequence", "id")
        .values_list("sequence", "record_hash")
        .iterator(chunk_size=VERIFY_CHUNK)
    )
    if since_last_checkpoint and latest is not None:
        row = AuditEvent.objects.filter(sequence=latest.sequence).first()
        if row is not None:
            start_sequence, start_hash = latest.sequence - 1, row.prev_hash
            vouched = _Vouchers([(latest.sequence, latest.record_hash)])

    rows = AuditEvent.objects.filter(sequence__gt=start_sequence).order_by("sequence")
    last_sequence, last_hash = _walk(
        report,
        _row_triples(rows.iterator(chunk_size=VERIFY_CHUNK)),
        after_sequence=start_sequence,
        after_hash=start_hash,
        vouched=vouched,
    )
    if report.broken is None and latest is not None and latest.sequence > last_sequence:
        report.broken = ChainBreak(
            "truncated",
            last_sequence + 1,
            f"the chain ends at #{last_sequence}, but a checkpoint signed at "
            f"{chain.format_time(latest.signed_at)} vouches for #{latest.sequence}: records "
            f"#{last_sequence + 1}..#{latest.sequence} were removed",
        )
    if report.broken is None and not since_last_checkpoint:
        report.broken = _unanchored(now=now)
    if report.broken is None:
        report.broken = _outbox_break(newest_only=since_last_checkpoint)
    if report.broken is None:
        report.last_sequence = last_sequence if last_sequence > report.anchor_sequence else None
        report.head_hash = last_hash
    return report


def verify_archive(directory: Path) -> ChainReport:
    """Check the archive segments in `directory` and that the database's chain continues them."""
    report = ChainReport()
    key = settings.AUDIT_CHECKPOINT_KEY
    after_sequence, after_hash = 0, chain.GENESIS_HASH
    for segment in archive.segments(directory):
        where = segment.manifest.name
        if not archive.manifest_signature_valid(segment.manifest, key=key):
            report.broken = ChainBreak("bad_signature", segment.first_sequence, f"{where}: invalid signature")
            return report
        if not segment.file.exists() or archive.file_sha256(segment.file) != segment.sha256:
            report.broken = ChainBreak(
                "archive_altered",
                segment.first_sequence,
                f"{segment.file.name}: missing or not the file its manifest hashes",
            )
            return report
        before = report.records
        after_sequence, after_hash = _walk(
            report,
            (archive.split_document(d) for d in archive.read_documents(segment.file)),
            after_sequence=after_sequence,
            after_hash=after_hash,
            vouched=lambda sequence, segment=segment: (
                segment.last_hash  # type: ignore[misc]
                if sequence == segment.last_sequence
                else None
            ),
        )
        if report.broken is None and (
            after_sequence != segment.last_sequence or report.records - before != segment.records
        ):
            report.broken = ChainBreak(
                "archive_altered",
                after_sequence + 1,
                f"{segment.file.name}: ends at #{after_sequence}, its manifest says #{segment.last_sequence}",
            )
        if report.broken is not None:
            return report
    report.archived_records = report.records
    anchor = ChainCheckpoint.objects.filter(kind=CheckpointKind.ANCHOR).order_by("-sequence").first()
    anchor_state = (anchor.sequence, anchor.record_hash) if anchor else (0, chain.GENESIS_HASH)
    if anchor_state != (after_sequence, after_hash):
        report.broken = ChainBreak(
            "archive_gap",
            after_sequence + 1,
            f"the archive ends at #{after_sequence} ({after_hash}) but the database's chain continues "
            f"from #{anchor_state[0]} ({anchor_state[1]})",
        )
        return report
    report.last_sequence = after_sequence or None
    report.head_hash = after_hash
    return report
