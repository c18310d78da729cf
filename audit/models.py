"""The audit log (append-only, hash-chained), its signed checkpoints, and compliance alerts."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models.fields.json import KT
from django.utils import timezone

from audit import chain
from core.codec import EventJSONDecoder, EventJSONEncoder

# The action whose events the velocity rule counts per user (indexed below).
PAYMENT_REQUESTED_ACTION = "payment.requested"


class AuditEvent(models.Model):
    """One event from an audit.* topic, stored once by event id and linked into the hash chain.

    PostgreSQL refuses UPDATE and DELETE on this table (trigger `audit_append_only`); only the
    retention service may delete, and only records it has archived first.
    """

    sequence = models.BigIntegerField(unique=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    event_id = models.CharField(max_length=255, unique=True)
    event_type = models.CharField(max_length=255, db_index=True)
    source = models.CharField(max_length=255)
    action = models.CharField(max_length=100, db_index=True)
    actor = models.CharField(max_length=255, db_index=True)
    subject_type = models.CharField(max_length=64, blank=True)
    subject_id = models.CharField(max_length=255, blank=True, db_index=True)
    correlation_id = models.CharField(max_length=255, blank=True, db_index=True)
    data = models.JSONField(encoder=EventJSONEncoder, decoder=EventJSONDecoder)
    occurred_at = models.DateTimeField(db_index=True)
    recorded_at = models.DateTimeField(default=timezone.now)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField(null=True)
    offset = models.BigIntegerField(null=True)

    class Meta:
        ordering = ["sequence"]
        indexes = [
            # The velocity rule counts one user's payment requests in a time window.
            models.Index(
                KT("data__details__userId"),
                models.F("occurred_at"),
                name="audit_payment_user_time_idx",
                condition=models.Q(action=PAYMENT_REQUESTED_ACTION),
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.subject_type}:{self.subject_id}"

    def content(self) -> dict[str, Any]:
        """The canonical content the record's hash covers (see audit.chain)."""
        return {
            "sequence": self.sequence,
            "eventId": self.event_id,
            "type": self.event_type,
            "source": self.source,
            "action": self.action,
            "actor": self.actor,
            "subjectType": self.subject_type,
            "subjectId": self.subject_id,
            "correlationId": self.correlation_id,
            "data": self.data,
            "occurredAt": chain.format_time(self.occurred_at),
            "recordedAt": chain.format_time(self.recorded_at),
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
        }

    def document(self) -> dict[str, Any]:
        """The record as archived and exported: its content plus its links."""
        return {**self.content(), "prevHash": self.prev_hash, "hash": self.hash}


class CheckpointKind(models.TextChoices):
    # The chain's head, signed periodically: a truncated tail falls short of it.
    CHECKPOINT = "checkpoint"
    # The last record purged by retention: the chain in the database continues from its hash.
    ANCHOR = "anchor"


class ChainCheckpoint(models.Model):
    """The chain's state at record `sequence` signed with AUDIT_CHECKPOINT_KEY (HMAC); append-only.

    Checkpoints of both kinds form one chain of their own: `number` runs 1, 2, ... without gaps and
    each signature covers the previous checkpoint's (`prev_signature`). Each is also published to
    audit.checkpoints, keyed by `number`: the copy a database writer cannot reach.
    """

    number = models.BigIntegerField(unique=True, help_text="The checkpoint's sequence number.")
    kind = models.CharField(max_length=16, choices=CheckpointKind.choices)
    sequence = models.BigIntegerField(help_text="The last record the checkpoint covers.")
    record_hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    prev_signature = models.CharField(max_length=64)
    signature = models.CharField(max_length=64)
    archive = models.CharField(max_length=255, blank=True, help_text="Archive file of an anchor.")

    class Meta:
        ordering = ["-sequence", "-id"]
        indexes = [models.Index(fields=["kind", "-sequence"], name="audit_checkpoint_kind_seq_idx")]

    def __str__(self) -> str:
        return f"{self.kind} at #{self.sequence}"


class AlertStatus(models.TextChoices):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


# The alert's state machine: the one place that says which status may follow which.
ALERT_TRANSITIONS: dict[str, frozenset[str]] = {
    AlertStatus.OPEN: frozenset({AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED}),
    AlertStatus.ACKNOWLEDGED: frozenset({AlertStatus.RESOLVED}),
    AlertStatus.RESOLVED: frozenset(),
}


class Severity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class ComplianceRuleName(models.TextChoices):
    """The built-in compliance rules (docs/audit.md); a plug-in rule may use another name."""

    HIGH_VALUE_TRANSACTION = "high_value_transaction"
    VELOCITY = "velocity"
    REPEATED_AUTH_FAILURE = "repeated_auth_failure"
    AUDIT_CHAIN_BROKEN = "audit_chain_broken"
    LEDGER_IMBALANCE = "ledger_imbalance"
    RECONCILIATION_MISMATCH = "reconciliation_mismatch"
    # An id the platform saw before arriving again with other content (core.ids.ConflictingDuplicate).
    CONFLICTING_DUPLICATE = "conflicting_duplicate"


class ComplianceAlert(models.Model):
    alert_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    rule = models.CharField(max_length=64, db_index=True)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    status = models.CharField(
        max_length=16, choices=AlertStatus.choices, default=AlertStatus.OPEN, db_index=True
    )
    subject = models.CharField(max_length=255, db_index=True)
    details = models.JSONField(encoder=EventJSONEncoder, decoder=EventJSONDecoder, default=dict)
    # At most one alert per key (e.g. one high-value alert per payment); null: no such limit.
    dedupe_key = models.CharField(max_length=255, unique=True, null=True, blank=True)
    observed_at = models.DateTimeField(help_text="When the observed behaviour happened.")
    source_event_id = models.CharField(max_length=255, blank=True)
    correlation_id = models.CharField(max_length=255, blank=True)
    raised_at = models.DateTimeField(default=timezone.now, db_index=True)
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=255, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=255, blank=True)
    notes = models.TextField(blank=True)

    class Meta:
        ordering = ["-raised_at", "-id"]
        indexes = [models.Index(fields=["rule", "subject", "observed_at"], name="audit_alert_rule_subj_idx")]

    def __str__(self) -> str:
        return f"{self.rule} {self.subject} ({self.status})"
