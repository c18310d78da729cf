"""Bridge tables: the inbox (effect-once consumption), the outbox and the dead letters."""

from __future__ import annotations

import uuid

from django.db import models


class InboxEvent(models.Model):
    """An event id a consumer has already had its effect for; the unique key makes it once."""

    consumer = models.CharField(max_length=100)
    event_id = models.CharField(max_length=255)
    event_type = models.CharField(max_length=255)
    processed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["consumer", "event_id"], name="inbox_once_per_consumer"),
        ]

    def __str__(self) -> str:
        return f"{self.consumer}:{self.event_id}"


class OutboxEvent(models.Model):
    """An event written in the same transaction as the change it reports, published by the relay."""

    event_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    topic = models.CharField(max_length=249)
    key = models.CharField(max_length=255)
    event_type = models.CharField(max_length=255)
    value = models.BinaryField()
    headers = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["id"], name="outbox_pending_idx", condition=models.Q(sent_at__isnull=True)),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id}"


class DeadLetter(models.Model):
    """A copy of a record sent to a `<domain>.dlq` topic, for operators to inspect and replay."""

    dlq_topic = models.CharField(max_length=249)
    original_topic = models.CharField(max_length=249)
    original_partition = models.IntegerField(null=True, blank=True)
    original_offset = models.BigIntegerField(null=True, blank=True)
    key = models.BinaryField(null=True, blank=True)
    value = models.BinaryField(null=True, blank=True)
    headers = models.JSONField(default=list, help_text="Original headers as [name, base64] pairs.")
    reason = models.CharField(max_length=64, db_index=True)
    error = models.TextField()
    failed_at = models.DateTimeField(db_index=True)
    replayed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-failed_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["original_topic", "original_partition", "original_offset", "reason"],
                name="dead_letter_once_per_record",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.original_topic}@{self.original_partition}:{self.original_offset} ({self.reason})"
