"""Bridge tables: the inbox (effect-once consumption), the outbox, the dead letters, the whole
values of records too large to dead-letter whole, and the partitions the bridge cannot move past."""

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


class OversizedRecord(models.Model):
    """The whole record behind a dead-letter *reference*: one too large to hand on to Redis or to
    publish whole to its DLQ. The DLQ carries its first 64 KiB and `dlq-original-size`; replaying
    the reference (admin or `dlq_replay`) republishes this value."""

    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    offset = models.BigIntegerField()
    key = models.BinaryField(null=True, blank=True)
    headers = models.JSONField(default=list, help_text="Original headers as [name, base64] pairs.")
    value = models.BinaryField()
    size = models.BigIntegerField()
    reason = models.CharField(max_length=64)
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["topic", "partition", "offset"], name="oversized_once_per_record"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.topic}@{self.partition}:{self.offset} ({self.size} bytes)"


class StuckPartition(models.Model):
    """A partition whose next record the bridge has failed to hand on for BRIDGE_STUCK_AFTER_S.

    Written by the bridge that owns the partition (and deleted once it moves on), read by the web
    `/health`. An operator's skip request (admin action) is picked up by that bridge, which
    dead-letters the record with dlq-reason `skipped_by_operator` and seeks past it.
    """

    group = models.CharField(max_length=255, help_text="The bridge's Kafka consumer group.")
    topic = models.CharField(max_length=249)
    partition = models.IntegerField()
    offset = models.BigIntegerField(help_text="The record the bridge cannot move past.")
    error = models.TextField()
    stuck_since = models.DateTimeField()
    reported_at = models.DateTimeField()
    reported_by = models.CharField(max_length=255, help_text="host:pid of the bridge.")
    skip_requested_at = models.DateTimeField(null=True, blank=True)
    skip_requested_by = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["stuck_since"]
        constraints = [
            models.UniqueConstraint(fields=["group", "topic", "partition"], name="stuck_once_per_partition"),
        ]

    def __str__(self) -> str:
        return f"{self.topic}@{self.partition}:{self.offset}"
