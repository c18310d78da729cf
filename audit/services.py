"""Audit use cases: append events to the hash chain, raise and work compliance alerts, sign
checkpoints, archive and purge expired records, record failed authentications.

Appends are serialized by a transaction-level advisory lock: under it a record reads the chain's
head, takes the next sequence number and links to the head's hash, and the compliance rules that
watch its action run; the lock is released when the transaction commits, so the next append
always sees this one. UPDATE and DELETE on the log are refused by a trigger; the retention service
alone may delete, by setting `audit.retention` for its own transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from celery import current_app
from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.utils import timezone

from audit import archive, chain, checkpoint_topic, rules
from audit.events import (
    AuditAction,
    AuditRecord,
    alert_raised_record,
    alert_worked_record,
    auth_failed_record,
    checkpoint_signed_event,
    compliance_alert_raised_event,
    log_archived_record,
)

# ComplianceRuleName and Severity are part of this module's public face: the other domains name the
# rule and severity of the alerts they raise through compliance_alert_raise from here, never from
# audit's models.
from audit.models import (
    ALERT_TRANSITIONS,
    AlertStatus,
    AuditEvent,
    ChainCheckpoint,
    CheckpointKind,
    ComplianceAlert,
    ComplianceRuleName,
    Severity,
)
from audit.selectors import ChainBreak, ChainReport, verify_chain, verify_segment
from bridge import outbox, topics
from bridge.codec import Envelope
from core import metrics, state_machine
from core.actors import user_actor

logger = logging.getLogger(__name__)

# pg_advisory_xact_lock keys (arbitrary, fixed): chain appends, retention runs, checkpoint signing.
CHAIN_LOCK = 7_301_846_113_001
RETENTION_LOCK = 7_301_846_113_002
CHECKPOINT_LOCK = 7_301_846_113_003

CHECKPOINT_TASK = "audit.checkpoint_chain"

# Every append waits for the chain lock; the holder must not then wait long for another lock
# (a migration, a TRUNCATE, a row an alert needs), stalling them all. It gives up instead, below
# PostgreSQL's deadlock_timeout (1 s), and the task retries: a deadlock then costs a retry.
CHAIN_LOCK_TIMEOUT = "500ms"
_LOCK_CHAIN_SQL = (
    f"SELECT pg_advisory_xact_lock({CHAIN_LOCK}); SET LOCAL lock_timeout = '{CHAIN_LOCK_TIMEOUT}'"
)

# The chain's head is always a row of the log (retention never purges the newest record), so an
# append reads and writes this one table only: a transaction that locks one relation cannot take
# part in a lock-order deadlock.
_HEAD_SQL = f"""
SELECT h.sequence, h.hash
FROM (
    (SELECT sequence, hash FROM {AuditEvent._meta.db_table} ORDER BY sequence DESC LIMIT 1)
    UNION ALL
    (SELECT 0, '{chain.GENESIS_HASH}')
) AS h (sequence, hash)
ORDER BY h.sequence DESC
LIMIT 1
"""  # noqa: S608 - the table name and the genesis hash are ours


class IllegalAlertTransition(state_machine.IllegalTransition):
    """An alert move ALERT_TRANSITIONS does not allow."""


# An alert's moves are recorded in the audit chain (alert_worked_record), with who and why.
ALERT_STATES = state_machine.StateMachine(
    noun="alert", moves=ALERT_TRANSITIONS, id_field="alert_id", error=IllegalAlertTransition
)


# --- the record path -------------------------------------------------------------------------------


def _occurred_at(event: Envelope) -> datetime:
    try:
        occurred = datetime.fromisoformat(event.time)
    except ValueError:
        return timezone.now()
    return occurred if occurred.tzinfo else occurred.replace(tzinfo=UTC)


def audit_event_record(*, event: Envelope) -> bool:
    """Append `event` to the audit log; False when its id is already there (a redelivery)."""
    return audit_events_record(events=[event]) == 1


def _new_row(event: Envelope) -> AuditEvent:
    record = AuditRecord.model_validate(event.data)
    return AuditEvent(
        event_id=event.id,
        event_type=event.type,
        source=event.source,
        action=record.action,
        actor=record.actor,
        subject_type=record.subjectType or "",
        subject_id=record.subjectId or event.subject or "",
        correlation_id=event.correlation_id or "",
        data=chain.normalize_json(event.data),
        occurred_at=_occurred_at(event),
        topic=event.topic or event.type,
        partition=event.partition,
        offset=event.offset,
    )


def audit_events_record(*, events: Sequence[Envelope]) -> int:
    """Append `events` in order, in one transaction under one hold of the chain lock; returns how
    many were new. An id already in the log (a redelivery) or repeated in `events` is skipped.

    The chain is the same as appending them one by one; the compliance rules then see each new
    record, with the batch's other records already in the log (they count by event time).
    """
    rows = [_new_row(event) for event in events]  # a malformed record fails the batch before the lock
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(_LOCK_CHAIN_SQL)
            cursor.execute(_HEAD_SQL)
            head_sequence, head_hash = cursor.fetchone()
        seen = set(
            AuditEvent.objects.filter(event_id__in=[row.event_id for row in rows]).values_list(
                "event_id", flat=True
            )
        )
        recorded_at = timezone.now()
        new = []
        for row in rows:
            if row.event_id in seen:
                continue
            seen.add(row.event_id)
            row.sequence = head_sequence = head_sequence + 1
            row.prev_hash = head_hash
            row.recorded_at = recorded_at
            row.hash = head_hash = chain.link_hash(head_hash, row.content())
            new.append(row)
        AuditEvent.objects.bulk_create(new)
        _apply_rules(new)
        count = len(new)
        transaction.on_commit(lambda: metrics.AUDIT_EVENTS.inc(count))
        every = settings.AUDIT_CHECKPOINT_EVERY_RECORDS
        if new and every > 0 and (new[0].sequence - 1) // every != new[-1].sequence // every:
            transaction.on_commit(_request_checkpoint)
    return count


def _request_checkpoint() -> None:
    """Have a worker sign the head now, not at beat's next minute: a burst of records is anchored
    every AUDIT_CHECKPOINT_EVERY_RECORDS. Best effort: if the broker refuses, beat's minute comes."""
    try:
        current_app.send_task(CHECKPOINT_TASK, retry=False)
    except Exception:  # noqa: BLE001 - any broker failure: beat signs within the minute anyway
        logger.warning("could not request an audit checkpoint", exc_info=True)


def _apply_rules(new: list[AuditEvent]) -> None:
    """Each configured rule over the new records it watches, as one batch (in sequence order)."""
    by_action: dict[str, list[AuditEvent]] = {}
    for row in new:
        by_action.setdefault(row.action, []).append(row)
    findings: list[tuple[AuditEvent, rules.Finding]] = []
    for action, rows in by_action.items():
        for rule in rules.rules_for(action):
            findings += [(row, f) for row, f in zip(rows, rule.evaluate(rows), strict=True) if f is not None]
    for row, finding in sorted(findings, key=lambda item: item[0].sequence):
        compliance_alert_raise(
            rule=finding.rule,
            severity=finding.severity,
            subject=finding.subject,
            details={**finding.details, "eventId": row.event_id, "sequence": row.sequence},
            dedupe_key=finding.dedupe_key,
            quiet_period=finding.quiet_period,
            observed_at=row.occurred_at,
            source_event_id=row.event_id,
            correlation_id=row.correlation_id,
        )


def _audit(*, topic: topics.Topic, record: AuditRecord, correlation_id: str | None = None) -> None:
    """Publish an audit record of the audit domain's own (it comes back into the log via Kafka)."""
    outbox.record_event(
        topic=topic, subject=record.subjectId or "", correlation_id=correlation_id or None, data=record
    )


# --- compliance alerts -----------------------------------------------------------------------------


def compliance_alert_raise(
    *,
    rule: str,
    severity: str,
    subject: str,
    details: Mapping[str, Any],
    dedupe_key: str | None = None,
    quiet_period: timedelta | None = None,
    observed_at: datetime | None = None,
    source_event_id: str = "",
    correlation_id: str = "",
) -> ComplianceAlert | None:
    """Raise a compliance alert: stored open, published to audit.compliance-alerts, counted.

    The entry point for every domain (e.g. the ledger's reconciliation raises `ledger_imbalance`).
    Returns None, raising nothing, when `dedupe_key` was used before or an alert of `rule` for
    `subject` was observed within `quiet_period` of `observed_at` (default: now).
    """
    if severity not in Severity.values:
        raise ValueError(f"severity must be one of {Severity.values}, not {severity!r}")
    observed_at = observed_at or timezone.now()
    subject = subject[:255]
    with transaction.atomic():
        if (
            quiet_period is not None
            and ComplianceAlert.objects.filter(
                rule=rule, subject=subject, observed_at__gt=observed_at - quiet_period
            ).exists()
        ):
            return None
        values = {
            "rule": rule,
            "severity": severity,
            "subject": subject,
            "details": chain.normalize_json(details),
            "observed_at": observed_at,
            "source_event_id": source_event_id,
            "correlation_id": correlation_id,
        }
        if dedupe_key is None:
            alert = ComplianceAlert.objects.create(**values)
        else:
            alert, created = ComplianceAlert.objects.get_or_create(dedupe_key=dedupe_key, defaults=values)
            if not created:
                return None
        outbox.record_event(
            topic=topics.AUDIT_COMPLIANCE_ALERTS,
            subject=str(alert.alert_id),
            data=compliance_alert_raised_event(alert),
            correlation_id=correlation_id or None,
        )
        _audit(
            topic=topics.AUDIT_COMPLIANCE_EVENTS,
            record=alert_raised_record(alert),
            correlation_id=correlation_id,
        )
        transaction.on_commit(metrics.COMPLIANCE_VIOLATIONS.labels(rule=alert.rule).inc)
    logger.warning("compliance alert %s raised: %s %s", alert.alert_id, alert.rule, alert.subject)
    return alert


def _append_note(alert: ComplianceAlert, *, by: AbstractBaseUser, note: str) -> None:
    if note.strip():
        stamp = chain.format_time(timezone.now())
        alert.notes += f"[{stamp}] {by.get_username()}: {note.strip()}\n"


def _transition(alert: ComplianceAlert, to_status: str, *, by: AbstractBaseUser, note: str) -> bool:
    """Move a locked alert to `to_status`; False when it is there already (a repeated request)."""
    if alert.status == to_status:
        return False
    ALERT_STATES.move(alert, to_status)
    action = AuditAction.ALERT_ACKNOWLEDGED
    if to_status == AlertStatus.ACKNOWLEDGED:
        alert.acknowledged_at, alert.acknowledged_by = timezone.now(), user_actor(by)
    else:
        alert.resolved_at, alert.resolved_by = timezone.now(), user_actor(by)
        action = AuditAction.ALERT_RESOLVED
    _audit(
        topic=topics.AUDIT_COMPLIANCE_EVENTS,
        record=alert_worked_record(alert, action=action, actor=user_actor(by), note=note),
        correlation_id=alert.correlation_id,
    )
    return True


@transaction.atomic
def compliance_alert_acknowledge(
    *, alert_id: str, by: AbstractBaseUser, assignee: AbstractBaseUser | None = None, note: str = ""
) -> ComplianceAlert:
    """Acknowledge an open alert and assign it (to `assignee`, else to the acknowledging user)."""
    alert = ComplianceAlert.objects.select_for_update().get(alert_id=alert_id)
    if _transition(alert, AlertStatus.ACKNOWLEDGED, by=by, note=note):
        alert.assignee = cast(Any, assignee or alert.assignee or by)  # AUTH_USER_MODEL rows
        _append_note(alert, by=by, note=note)
        alert.save()
    return alert


@transaction.atomic
def compliance_alert_resolve(*, alert_id: str, by: AbstractBaseUser, note: str = "") -> ComplianceAlert:
    alert = ComplianceAlert.objects.select_for_update().get(alert_id=alert_id)
    if _transition(alert, AlertStatus.RESOLVED, by=by, note=note):
        _append_note(alert, by=by, note=note)
        alert.save()
    return alert


@transaction.atomic
def compliance_alert_update(
    *, alert_id: str, by: AbstractBaseUser, assignee: AbstractBaseUser | None, note: str = ""
) -> ComplianceAlert:
    """Reassign an alert and/or add a note to it (notes are appended, never rewritten)."""
    alert = ComplianceAlert.objects.select_for_update().get(alert_id=alert_id)
    if alert.assignee_id != (assignee.pk if assignee else None):
        alert.assignee = assignee  # type: ignore[assignment]
    _append_note(alert, by=by, note=note)
    alert.save()
    return alert


# --- checkpoints and verification ------------------------------------------------------------------


@transaction.atomic
def _signed_checkpoint(
    *, kind: str, sequence: int, record_hash: str, archive_name: str = ""
) -> ChainCheckpoint:
    """Sign the chain's state at record `sequence` as the next checkpoint, linked to the previous
    one, and publish it to audit.checkpoints in the same transaction (the outbox)."""
    with connection.cursor() as cursor:
        # Numbers run without gaps: one signer at a time takes the next one.
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHECKPOINT_LOCK])
    previous = ChainCheckpoint.objects.order_by("-number").first()
    number = previous.number + 1 if previous else 1
    prev_signature = previous.signature if previous else chain.GENESIS_SIGNATURE
    signed_at = timezone.now()
    checkpoint = ChainCheckpoint.objects.create(
        number=number,
        kind=kind,
        sequence=sequence,
        record_hash=record_hash,
        signed_at=signed_at,
        archive=archive_name,
        prev_signature=prev_signature,
        signature=chain.sign_checkpoint(
            settings.AUDIT_CHECKPOINT_KEY,
            number=number,
            kind=kind,
            sequence=sequence,
            record_hash=record_hash,
            signed_at=signed_at,
            prev_signature=prev_signature,
        ),
    )
    outbox.record_event(
        topic=topics.AUDIT_CHECKPOINTS,
        subject=str(number),
        data=checkpoint_signed_event(checkpoint).model_dump(),
    )
    return checkpoint


def audit_chain_broken_alert(*, report: ChainReport) -> ComplianceAlert | None:
    """Raise `audit_chain_broken` for a failed verification (once per break found)."""
    broken = report.broken
    assert broken is not None
    return compliance_alert_raise(
        rule=ComplianceRuleName.AUDIT_CHAIN_BROKEN,
        severity=Severity.CRITICAL,
        subject=f"audit_event:{broken.sequence}",
        details={
            "reason": broken.reason,
            "sequence": broken.sequence,
            "eventId": broken.event_id,
            "message": broken.message,
        },
        dedupe_key=f"{ComplianceRuleName.AUDIT_CHAIN_BROKEN}:{broken.reason}:{broken.sequence}",
    )


def _topic_break(comparison: checkpoint_topic.TopicComparison) -> ChainBreak | None:
    if comparison.agrees or comparison.unreadable is not None:
        return None
    shown = comparison.differences[:5]
    more = len(comparison.differences) - len(shown)
    return ChainBreak(
        "kafka_mismatch",
        comparison.first_sequence,
        f"the database's checkpoints differ from {topics.AUDIT_CHECKPOINTS.name}: "
        + "; ".join(shown)
        + (f"; and {more} more" if more else ""),
    )


def audit_chain_check(*, compare_topic: bool = True) -> ChainReport:
    """Verify the whole chain and, when the database's chain holds, compare its checkpoints with
    those on audit.checkpoints (which a database writer cannot take back); a break or a difference
    raises an `audit_chain_broken` alert.

    A topic Kafka cannot serve now is logged and reported, not alerted on: an outage of Kafka is
    not tampering, and the next run compares again.
    """
    report = verify_chain()
    if report.intact and compare_topic:
        comparison = checkpoint_topic.verify_published()
        report.published = {
            "agrees": comparison.agrees,
            "database": comparison.database,
            "published": comparison.published,
            "pending": comparison.pending,
            "unreadable": comparison.unreadable,
        }
        if comparison.unreadable is not None:
            logger.error("audit checkpoints not compared with Kafka: %s", comparison.unreadable)
        report.broken = _topic_break(comparison)
    if not report.intact:
        logger.error("audit chain broken: %s", report.broken)
        audit_chain_broken_alert(report=report)
    return report


def audit_checkpoint_create(*, now: datetime | None = None) -> ChainCheckpoint | None:
    """Sign the chain's head, after verifying what was appended since the last checkpoint.

    Nothing new: no checkpoint. A break: no signature, an `audit_chain_broken` alert instead.
    Nor is a first checkpoint signed over records already older than AUDIT_CHECKPOINT_MAX_AGE_S:
    with no checkpoint at all, they are a log whose checkpoints were deleted, not a fresh one,
    and signing them would vouch for whatever was written there meanwhile.
    """
    report = verify_chain(since_last_checkpoint=True, now=now)
    if not report.intact:
        logger.error("audit chain broken, not signing a checkpoint: %s", report.broken)
        audit_chain_broken_alert(report=report)
        return None
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHECKPOINT_LOCK])
        latest = ChainCheckpoint.objects.filter(kind=CheckpointKind.CHECKPOINT).order_by("-sequence").first()
        if report.last_sequence is None or (latest is not None and latest.sequence >= report.last_sequence):
            return None
        return _signed_checkpoint(
            kind=CheckpointKind.CHECKPOINT, sequence=report.last_sequence, record_hash=report.head_hash
        )


# --- retention -------------------------------------------------------------------------------------


@dataclass
class RetentionResult:
    archived: int = 0
    segments: list[str] = field(default_factory=list)
    anchor_sequence: int | None = None
    stopped: str | None = None


def _latest_anchor() -> tuple[int, str]:
    anchor = ChainCheckpoint.objects.filter(kind=CheckpointKind.ANCHOR).order_by("-sequence").first()
    return (anchor.sequence, anchor.record_hash) if anchor else (0, chain.GENESIS_HASH)


def _expired_prefix_end(cutoff: datetime) -> int:
    """The last sequence of the longest prefix of the chain whose events all occurred before
    `cutoff`, short of the newest record: the chain is purged from its start only, so it stays
    one unbroken chain, and its head stays in the log for the next append to link to."""
    first_kept = (
        AuditEvent.objects.filter(occurred_at__gte=cutoff)
        .order_by("sequence")
        .values_list("sequence", flat=True)
        .first()
    )
    head = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first() or 0
    return min(first_kept if first_kept is not None else head, head) - 1


def audit_retention_apply(
    *, now: datetime | None = None, archive_dir: Path | None = None, batch_size: int | None = None
) -> RetentionResult:
    """Archive, then purge, records that occurred more than AUDIT_RETENTION_DAYS ago.

    Segment by segment: verify the segment's links from the current anchor, write it to a gzip
    JSONL file with a signed manifest, then in one transaction sign a new anchor at its last
    record and delete it. The anchor's hash is where the chain in the database now starts, so the
    chain stays verifiable across the purge, and the archive with it. A crash between writing
    and purging leaves a file that the next run writes again, identically.
    """
    now = now or timezone.now()
    directory = Path(archive_dir or settings.AUDIT_ARCHIVE_DIR)
    batch = batch_size or settings.AUDIT_RETENTION_BATCH_SIZE
    cutoff = now - timedelta(days=settings.AUDIT_RETENTION_DAYS)
    result = RetentionResult()
    end = _expired_prefix_end(cutoff)
    while True:
        anchor_sequence, anchor_hash = _latest_anchor()
        last = min(end, anchor_sequence + batch)
        if last <= anchor_sequence:
            return result
        rows = list(
            AuditEvent.objects.filter(sequence__gt=anchor_sequence, sequence__lte=last).order_by("sequence")
        )
        check = verify_segment(
            rows, after_sequence=anchor_sequence, after_hash=anchor_hash, through_sequence=last
        )
        if not check.intact:
            audit_chain_broken_alert(report=check)
            result.stopped = check.broken.message if check.broken else ""
            return result
        segment = archive.write_segment(
            directory, [row.document() for row in rows], key=settings.AUDIT_CHECKPOINT_KEY
        )
        if not _purge_segment(
            segment, anchor_sequence=anchor_sequence, last_hash=rows[-1].hash, cutoff=cutoff
        ):
            continue  # another run purged this segment meanwhile
        logger.info("audit retention: archived and purged #%s..#%s", anchor_sequence + 1, last)
        result.archived += len(rows)
        result.segments.append(segment.file.name)
        result.anchor_sequence = last


@transaction.atomic
def _purge_segment(
    segment: archive.Segment, *, anchor_sequence: int, last_hash: str, cutoff: datetime
) -> bool:
    """Anchor the chain at the archived segment's last record and delete the segment's records."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [RETENTION_LOCK])
        if _latest_anchor()[0] != anchor_sequence:
            return False
        # The append-only trigger lets this transaction, and only it, delete.
        cursor.execute("SET LOCAL audit.retention = 'on'")
    _signed_checkpoint(
        kind=CheckpointKind.ANCHOR,
        sequence=segment.last_sequence,
        record_hash=last_hash,
        archive_name=segment.file.name,
    )
    AuditEvent.objects.filter(sequence__gt=anchor_sequence, sequence__lte=segment.last_sequence).delete()
    with connection.cursor() as cursor:
        # Called inside an outer transaction, SET LOCAL would outlive this function: end it here.
        cursor.execute("SET LOCAL audit.retention = 'off'")
    _audit(topic=topics.AUDIT_COMPLIANCE_EVENTS, record=log_archived_record(segment, cutoff=cutoff))
    return True


# --- failed authentication -------------------------------------------------------------------------


def auth_failure_record(
    *, channel: str, username: str | None, remote_addr: str | None, path: str, reason: str
) -> None:
    """Publish a failed authentication as an audit record (topic audit.auth-events).

    The subject is the username tried, else the client's address, so the repeated_auth_failure
    rule counts attempts against one account, or from one client that gave no username.
    """
    with transaction.atomic():
        _audit(
            topic=topics.AUDIT_AUTH_EVENTS,
            record=auth_failed_record(
                channel=channel, username=username, remote_addr=remote_addr, path=path, reason=reason
            ),
        )
