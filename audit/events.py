"""The audit domain's event schemas: the records every domain publishes to `audit.*`, alerts, and
the signed checkpoints of the chain (with their builder)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from audit import chain
from bridge import topics

if TYPE_CHECKING:
    from audit.archive import Segment
    from audit.models import ChainCheckpoint, ComplianceAlert


class AuditRecord(BaseModel):
    """The data of an audit.<domain>-events CloudEvent; fields beyond these are kept.

    Lengths match the audit log's columns, so an over-long record is dead-lettered by the bridge
    rather than failing in the worker.
    """

    model_config = ConfigDict(extra="allow")

    action: str = Field(min_length=1, max_length=100)
    subjectType: str | None = Field(default=None, max_length=64)  # noqa: N815 - the wire name
    subjectId: str | None = Field(default=None, max_length=255)  # noqa: N815
    actor: str = Field(default="system", max_length=255)
    details: dict[str, Any] = Field(default_factory=dict)


def audit_record(
    *, action: str, subject_type: str, subject_id: str, actor: str, details: Mapping[str, Any]
) -> AuditRecord:
    """The one builder of an audit record, for every domain that publishes to its audit.* topic."""
    return AuditRecord(
        action=action, subjectType=subject_type, subjectId=subject_id, actor=actor, details=dict(details)
    )


class ComplianceAlertRaised(BaseModel):
    """The data of an audit.compliance-alerts event (docs/events.md)."""

    alertId: str  # noqa: N815 - the wire name
    rule: str
    severity: str
    subject: str
    details: dict[str, Any]
    status: str
    raisedAt: str  # noqa: N815


class CheckpointSigned(BaseModel):
    """The data of an audit.checkpoints event, keyed by `sequence`: one signed checkpoint.

    `sequence` is the checkpoint's own number (1, 2, ... without gaps); `recordSequence` and
    `recordHash` the chain head it covers; `signature` is HMAC-SHA256 with AUDIT_CHECKPOINT_KEY
    over these and `prevSignature`, the previous checkpoint's signature (see audit.chain).
    """

    sequence: int
    kind: str
    recordSequence: int  # noqa: N815 - the wire name
    recordHash: str  # noqa: N815
    signedAt: str  # noqa: N815
    prevSignature: str  # noqa: N815
    signature: str
    archive: str = ""


def checkpoint_signed_event(checkpoint: ChainCheckpoint) -> CheckpointSigned:
    return CheckpointSigned(
        sequence=checkpoint.number,
        kind=checkpoint.kind,
        recordSequence=checkpoint.sequence,
        recordHash=checkpoint.record_hash,
        signedAt=chain.format_time(checkpoint.signed_at),
        prevSignature=checkpoint.prev_signature,
        signature=checkpoint.signature,
        archive=checkpoint.archive,
    )


class AuditAction:
    """Actions the audit domain records about itself and about authentication."""

    AUTH_FAILED = "auth.failed"
    ALERT_RAISED = "compliance_alert.raised"
    ALERT_ACKNOWLEDGED = "compliance_alert.acknowledged"
    ALERT_RESOLVED = "compliance_alert.resolved"
    LOG_ARCHIVED = "audit_log.archived"


# --- the audit domain's own events: alerts, their work, archiving, failed authentication ----------

COMPLIANCE_ALERT_SUBJECT = "compliance_alert"
AUDIT_ACTOR = "system:audit"


def compliance_alert_raised_event(alert: ComplianceAlert) -> ComplianceAlertRaised:
    return ComplianceAlertRaised(
        alertId=str(alert.alert_id),
        rule=alert.rule,
        severity=alert.severity,
        subject=alert.subject,
        details=alert.details,
        status=alert.status,
        raisedAt=chain.format_time(alert.raised_at),
    )


def alert_raised_record(alert: ComplianceAlert) -> AuditRecord:
    return audit_record(
        action=AuditAction.ALERT_RAISED,
        subject_type=COMPLIANCE_ALERT_SUBJECT,
        subject_id=str(alert.alert_id),
        actor=AUDIT_ACTOR,
        details={"rule": alert.rule, "severity": alert.severity, "subject": alert.subject},
    )


def alert_worked_record(alert: ComplianceAlert, *, action: str, actor: str, note: str) -> AuditRecord:
    """An operator acknowledged or resolved `alert` (its status already the new one)."""
    return audit_record(
        action=action,
        subject_type=COMPLIANCE_ALERT_SUBJECT,
        subject_id=str(alert.alert_id),
        actor=actor,
        details={"rule": alert.rule, "subject": alert.subject, "status": alert.status, "note": note or None},
    )


def log_archived_record(segment: Segment, *, cutoff: datetime) -> AuditRecord:
    return audit_record(
        action=AuditAction.LOG_ARCHIVED,
        subject_type="audit_archive",
        subject_id=segment.file.name,
        actor=AUDIT_ACTOR,
        details={
            "firstSequence": segment.first_sequence,
            "lastSequence": segment.last_sequence,
            "records": segment.records,
            "sha256": segment.sha256,
            "cutoff": chain.format_time(cutoff),
        },
    )


def auth_failed_record(
    *, channel: str, username: str | None, remote_addr: str | None, path: str, reason: str
) -> AuditRecord:
    """The subject is the username tried, else the client's address, so the repeated_auth_failure
    rule counts attempts against one account, or from one client that gave no username."""
    subject_type, subject_id = ("user", username[:150]) if username else ("client", remote_addr or "unknown")
    return audit_record(
        action=AuditAction.AUTH_FAILED,
        subject_type=subject_type,
        subject_id=subject_id,
        actor="anonymous",
        details={"channel": channel, "remoteAddr": remote_addr, "path": path[:500], "reason": reason},
    )


# The types this domain emits and the models of their `data` (bridge/schemas.py publishes their
# JSON Schemas; the audit.* record topics are consumed, and their schema is AuditRecord's).
EMITTED_EVENTS = {
    topics.AUDIT_COMPLIANCE_ALERTS.name: ComplianceAlertRaised,
    topics.AUDIT_CHECKPOINTS.name: CheckpointSigned,
}

# The topics this domain records events on (bridge.consumers.producers; docs/events.md's producers).
PRODUCES = [
    topics.AUDIT_AUTH_EVENTS,  # failed logins and API authentications (the web process)
    topics.AUDIT_COMPLIANCE_EVENTS,
    topics.AUDIT_COMPLIANCE_ALERTS,  # compliance_alert_raise, also called by ledger, payments, orders
    topics.AUDIT_CHECKPOINTS,
]
