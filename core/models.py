"""Project-wide tables that belong to no single domain (HTTP idempotency keys), and the abstract
models every domain's state history and saga steps share."""

from __future__ import annotations

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of one client: the request's fingerprint and, once done, its answer."""

    class State(models.TextChoices):
        IN_FLIGHT = "in_flight"
        COMPLETED = "completed"

    client = models.CharField(max_length=128)
    key = models.CharField(max_length=255)
    scope = models.CharField(max_length=100)
    fingerprint = models.CharField(max_length=64)
    state = models.CharField(max_length=16, choices=State.choices)
    locked_until = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True, encoder=DjangoJSONEncoder)
    response_location = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["client", "scope", "key"], name="idempotency_key_per_client"),
        ]

    def __str__(self) -> str:
        return f"{self.client} {self.scope} {self.key} {self.state}"


class StatusTransition(models.Model):
    """Who moved a stateful row from which status to which, when and why (each domain's state
    history subclasses this with the foreign key to its row)."""

    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32)
    actor = models.CharField(max_length=128)
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"


class AbstractSagaStep(models.Model):
    """One step of a saga run for one row, done once: a redelivered event finds its step recorded
    and moves on. Each domain's saga subclasses this with the foreign key to its row and the
    unique constraint on that key and `step`."""

    step = models.CharField(max_length=64)
    detail = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        abstract = True
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return self.step
