"""Serializers of the audit API: records as their chain documents, alerts, and query filters."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from rest_framework import serializers

from audit.models import AlertStatus, AuditEvent, ComplianceAlert, Severity

ALERT_WORKER_PERMISSION = "audit.change_compliancealert"


class AuditEventSerializer(serializers.Serializer):
    """A record exactly as the chain hashes it (see audit.chain), plus `prevHash` and `hash`."""

    sequence = serializers.IntegerField()
    eventId = serializers.CharField()  # noqa: N815 - the wire name
    type = serializers.CharField()
    source = serializers.CharField()  # type: ignore[assignment]  # a field named like a stub attribute
    action = serializers.CharField()
    actor = serializers.CharField()
    subjectType = serializers.CharField()  # noqa: N815
    subjectId = serializers.CharField()  # noqa: N815
    correlationId = serializers.CharField()  # noqa: N815
    data = serializers.JSONField()  # type: ignore[assignment]  # a field named like a stub attribute
    occurredAt = serializers.DateTimeField()  # noqa: N815
    recordedAt = serializers.DateTimeField()  # noqa: N815
    topic = serializers.CharField()
    partition = serializers.IntegerField(allow_null=True)
    offset = serializers.IntegerField(allow_null=True)
    prevHash = serializers.CharField()  # noqa: N815
    hash = serializers.CharField()

    def to_representation(self, instance: AuditEvent) -> dict[str, Any]:
        return instance.document()


class AuditEventFilterSerializer(serializers.Serializer):
    type = serializers.CharField(required=False, help_text="Event type (the audit topic).")
    action = serializers.CharField(required=False)
    subjectType = serializers.CharField(required=False)  # noqa: N815
    subject = serializers.CharField(required=False, help_text="Subject id.")
    actor = serializers.CharField(required=False)
    source = serializers.CharField(  # type: ignore[assignment]  # a field named like a stub attribute
        required=False, help_text="CloudEvents source, e.g. /kafka-platform/payments."
    )
    topic = serializers.CharField(required=False)
    correlationId = serializers.CharField(required=False)  # noqa: N815
    since = serializers.DateTimeField(required=False, help_text="Occurred at or after (RFC 3339).")
    until = serializers.DateTimeField(required=False, help_text="Occurred before (RFC 3339).")

    def selector_arguments(self) -> dict[str, Any]:
        data = self.validated_data
        return {
            "event_type": data.get("type"),
            "action": data.get("action"),
            "subject_type": data.get("subjectType"),
            "subject_id": data.get("subject"),
            "actor": data.get("actor"),
            "source": data.get("source"),
            "topic": data.get("topic"),
            "correlation_id": data.get("correlationId"),
            "occurred_after": data.get("since"),
            "occurred_before": data.get("until"),
        }


class ComplianceAlertSerializer(serializers.ModelSerializer):
    alertId = serializers.UUIDField(source="alert_id")  # noqa: N815
    observedAt = serializers.DateTimeField(source="observed_at")  # noqa: N815
    raisedAt = serializers.DateTimeField(source="raised_at")  # noqa: N815
    assignee: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )
    acknowledgedAt = serializers.DateTimeField(source="acknowledged_at")  # noqa: N815
    acknowledgedBy = serializers.CharField(source="acknowledged_by")  # noqa: N815
    resolvedAt = serializers.DateTimeField(source="resolved_at")  # noqa: N815
    resolvedBy = serializers.CharField(source="resolved_by")  # noqa: N815
    sourceEventId = serializers.CharField(source="source_event_id")  # noqa: N815
    correlationId = serializers.CharField(source="correlation_id")  # noqa: N815
    details = serializers.JSONField()

    class Meta:
        model = ComplianceAlert
        fields = [
            "alertId",
            "rule",
            "severity",
            "status",
            "subject",
            "details",
            "observedAt",
            "raisedAt",
            "assignee",
            "acknowledgedAt",
            "acknowledgedBy",
            "resolvedAt",
            "resolvedBy",
            "notes",
            "sourceEventId",
            "correlationId",
        ]
        read_only_fields = fields


class ComplianceAlertFilterSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=AlertStatus.choices, required=False)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    rule = serializers.CharField(required=False)
    subject = serializers.CharField(required=False)


class AlertNoteSerializer(serializers.Serializer):
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class AlertAcknowledgeSerializer(AlertNoteSerializer):
    assignee = serializers.CharField(
        required=False, help_text="Username of an auditor; default: the acknowledging user."
    )

    def validate_assignee(self, value: str) -> Any:
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None or not user.has_perm(ALERT_WORKER_PERMISSION):
            raise serializers.ValidationError(f"{value!r} is not an active user who works alerts")
        return user


class ChainBreakSerializer(serializers.Serializer):
    sequence = serializers.IntegerField(allow_null=True)
    eventId = serializers.CharField(allow_null=True)  # noqa: N815 - the wire name
    reason = serializers.CharField()
    message = serializers.CharField()


class ChainReportSerializer(serializers.Serializer):
    """The result of a verification (audit.selectors.ChainReport.as_dict)."""

    intact = serializers.BooleanField()
    records = serializers.IntegerField()
    firstSequence = serializers.IntegerField(allow_null=True)  # noqa: N815
    lastSequence = serializers.IntegerField(allow_null=True)  # noqa: N815
    headHash = serializers.CharField()  # noqa: N815
    anchorSequence = serializers.IntegerField()  # noqa: N815
    checkpoints = serializers.IntegerField()
    archivedRecords = serializers.IntegerField()  # noqa: N815
    firstBadRecord = ChainBreakSerializer(allow_null=True)  # noqa: N815
