"""The audit log: every event published to an audit.* topic, stored once by event id."""

from __future__ import annotations

from django.db import models

from bridge.codec import EventJSONDecoder, EventJSONEncoder


class AuditEvent(models.Model):
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
    recorded_at = models.DateTimeField(auto_now_add=True)
    topic = models.CharField(max_length=249)
    partition = models.IntegerField(null=True)
    offset = models.BigIntegerField(null=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.action} {self.subject_type}:{self.subject_id}"
