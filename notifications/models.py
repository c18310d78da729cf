"""Notification tables: templates, notifications, their delivery attempts and webhook endpoints."""

from __future__ import annotations

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.codec import EventJSONDecoder, EventJSONEncoder

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks prefix, not a secret


def generate_webhook_secret() -> str:
    """A new endpoint secret in the Standard Webhooks form: `whsec_` + base64 of 32 random bytes."""
    return WEBHOOK_SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


class Channel(models.TextChoices):
    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"
    WEBHOOK = "webhook"


class NotificationStatus(models.TextChoices):
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


# The state machine of a notification: the one place that says which status may follow which.
# sending -> queued is a retry (or a resend after an unknown outcome); sent/failed -> queued is an
# operator's redelivery.
TRANSITIONS: dict[str, frozenset[str]] = {
    NotificationStatus.QUEUED: frozenset({NotificationStatus.SENDING, NotificationStatus.FAILED}),
    NotificationStatus.SENDING: frozenset(
        {NotificationStatus.SENT, NotificationStatus.FAILED, NotificationStatus.QUEUED}
    ),
    NotificationStatus.SENT: frozenset({NotificationStatus.QUEUED}),
    NotificationStatus.FAILED: frozenset({NotificationStatus.QUEUED}),
}
IN_FLIGHT = frozenset({NotificationStatus.QUEUED, NotificationStatus.SENDING})


class AttemptStatus(models.TextChoices):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    # The worker was lost between handing the message to the provider and recording the answer.
    UNKNOWN = "unknown"


class FailureReason(models.TextChoices):
    """The `reason` values of notifications.notification-failed."""

    TEMPLATE_NOT_FOUND = "template_not_found"
    TEMPLATE_ERROR = "template_error"
    INVALID_RECIPIENT = "invalid_recipient"
    REJECTED = "rejected"
    RETRIES_EXHAUSTED = "retries_exhausted"
    ENDPOINT_DISABLED = "endpoint_disabled"
    FORBIDDEN_TARGET = "forbidden_target"
    OUTCOME_UNKNOWN = "outcome_unknown"


class DeferReason(models.TextChoices):
    RATE_LIMITED = "rate_limited"
    CIRCUIT_OPEN = "circuit_open"


class Template(models.Model):
    """A message per key, channel and locale, rendered with Django's template engine."""

    key = models.SlugField(max_length=100, help_text="What callers name, e.g. payment_captured.")
    channel = models.CharField(max_length=16, choices=Channel.choices)
    locale = models.CharField(max_length=35, default="en", help_text="Lower case, e.g. en, fr, pt-br.")
    subject = models.CharField(max_length=255, blank=True, help_text="Email subject or push title.")
    body = models.TextField(help_text="Plain text; autoescaping is off.")
    html_body = models.TextField(blank=True, help_text="Email HTML alternative; autoescaped.")
    sample_context = models.JSONField(
        default=dict, blank=True, help_text="Context the admin preview renders the template with."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key", "channel", "locale"]
        constraints = [
            models.UniqueConstraint(fields=["key", "channel", "locale"], name="template_once_per_locale"),
        ]

    def __str__(self) -> str:
        return f"{self.key} [{self.channel}/{self.locale}]"


class EndpointKind(models.TextChoices):
    # Registered through the API or admin, with its own secret and the event types it wants.
    REGISTERED = "registered"
    # A customer's webhookUrl (or a requested webhook's URL), one row per owner and URL: signed
    # with the owner's own secret for that URL, or with the platform secret when nobody owns it
    # (a payment or request that came through Kafka).
    RECIPIENT = "recipient"


class WebhookEndpoint(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="webhook_endpoints",
        help_text="The API client it belongs to and whose objects' events it receives; "
        "empty for the platform's own (events about objects that came through Kafka).",
    )
    url = models.URLField(max_length=2000)
    kind = models.CharField(max_length=16, choices=EndpointKind.choices, default=EndpointKind.REGISTERED)
    secret = models.CharField(
        max_length=100,
        blank=True,
        default=generate_webhook_secret,
        help_text="whsec_... ; empty means the platform's WEBHOOK_SIGNING_SECRET (ownerless rows only).",
    )
    event_types = models.JSONField(
        default=list,
        blank=True,
        help_text='Template keys delivered here, e.g. ["payment_captured"]; "*" all.',
    )
    description = models.CharField(max_length=255, blank=True)
    is_active = models.BooleanField(default=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Notifications given up on since the last successful delivery."
    )
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # NULLS NOT DISTINCT: one ownerless row per URL as well, also under concurrent inserts.
            models.UniqueConstraint(
                fields=["owner", "url"],
                condition=Q(kind="recipient"),
                nulls_distinct=False,
                name="webhook_recipient_url_once_per_owner",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.url} ({self.kind}{'' if self.is_active else ', disabled'})"

    def wants(self, event_type: str) -> bool:
        return "*" in self.event_types or event_type in self.event_types


class Notification(models.Model):
    notification_id = models.CharField(max_length=255, unique=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="owned_notifications",
        help_text="The API client it belongs to: the requester, or the client of the payment it is "
        "about; empty for what came through Kafka.",
    )
    requested_by = models.CharField(
        max_length=255, blank=True, help_text="The audit actor who asked for it (user:<username>)."
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    recipient = models.CharField(max_length=2000)
    template_key = models.CharField(max_length=100, blank=True)
    locale = models.CharField(max_length=35, blank=True, help_text="As requested.")
    template_locale = models.CharField(max_length=35, blank=True, help_text="The template's, after fallback.")
    context = models.JSONField(default=dict, encoder=EventJSONEncoder, decoder=EventJSONDecoder)
    # Rendered once, when queued: every attempt sends the same message.
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    html_body = models.TextField(blank=True)
    webhook_endpoint = models.ForeignKey(
        WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="notifications"
    )
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, db_index=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Delivery attempts made, in all.")
    retry_step = models.PositiveIntegerField(default=0, help_text="Position in the retry schedule.")
    # When the dispatcher should next look at it: a scheduled retry or deferral while queued, the
    # end of a Celery task's lease while queued and claimed, the stuck deadline while sending.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claim = models.UUIDField(null=True, blank=True, help_text="The Celery task entitled to deliver it.")
    rate_reserved = models.BooleanField(
        default=False, help_text="A rate-limit slot is already reserved for the next attempt."
    )
    deferrals = models.PositiveIntegerField(default=0)
    deferred_reason = models.CharField(max_length=32, blank=True, choices=DeferReason.choices)
    provider = models.CharField(max_length=100, blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    failure_reason = models.CharField(max_length=32, blank=True, choices=FailureReason.choices)
    last_error = models.TextField(blank=True)
    correlation_id = models.CharField(max_length=255, blank=True)
    source_event_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="notification_due_idx",
                condition=Q(next_attempt_at__isnull=False),
            ),
        ]
        constraints = [
            # A notification that is not finished is always visible to the dispatcher, so no crash
            # can leave one behind that nobody will look at again.
            models.CheckConstraint(
                condition=(
                    Q(status__in=["queued", "sending"], next_attempt_at__isnull=False)
                    | Q(status__in=["sent", "failed"], next_attempt_at__isnull=True)
                ),
                name="notification_unfinished_is_scheduled",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.notification_id} {self.channel} {self.status}"


class DeliveryAttempt(models.Model):
    """One hand-over to a provider, written as `sending` and committed before the provider is called."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="delivery_attempts")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=16, choices=AttemptStatus.choices)
    provider = models.CharField(max_length=100)
    idempotency_key = models.CharField(max_length=255)
    started_at = models.DateTimeField()
    handed_over_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the message went to a provider that does not deduplicate (written before the "
        "call): a lost attempt without it was never sent.",
    )
    finished_at = models.DateTimeField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    status_code = models.IntegerField(null=True, blank=True, help_text="HTTP or SMTP reply code.")
    provider_message_id = models.CharField(max_length=255, blank=True)
    error = models.TextField(blank=True)
    # What a webhook receiver answered (non-2xx). Kept apart from `error`, which travels in events
    # and logs: only the endpoint's owner (and operators in the admin) may read it.
    response_body = models.TextField(blank=True)

    class Meta:
        ordering = ["notification", "number"]
        constraints = [
            models.UniqueConstraint(fields=["notification", "number"], name="attempt_number_once"),
        ]

    def __str__(self) -> str:
        return f"#{self.number} {self.status}"
