"""The notifications domain's event schemas: what it consumes and what it emits (docs/events.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge import topics
from core.ids import ObjectId

if TYPE_CHECKING:  # the models import nothing from here, but keep the schemas importable alone
    from notifications.models import Notification

ChannelName = Literal["email", "sms", "push", "webhook"]


class NotificationRequested(BaseModel):
    """notifications.notification-requested: a template's key, or a subject and body."""

    model_config = ConfigDict(extra="allow")

    notificationId: ObjectId = Field(min_length=1, max_length=255)  # noqa: N815 - the wire name
    channel: ChannelName
    recipient: str = Field(min_length=1, max_length=2000)
    template: str | None = Field(default=None, min_length=1, max_length=100)
    subject: str | None = Field(default=None, max_length=255)
    body: str | None = None
    # Any JSON values; numbers arrive as Decimal (the codec and the API's parser never make floats)
    # and are stored and passed on with their digits.
    context: dict[str, Any] = Field(default_factory=dict)
    locale: str | None = Field(default=None, max_length=35)
    # Set by the API to the requester's audit actor (`user:<username>`): the notification belongs
    # to that user and the audit log names it. Absent for requests produced straight to Kafka.
    requestedBy: str | None = Field(default=None, max_length=255)  # noqa: N815

    @model_validator(mode="after")
    def _template_or_body(self) -> NotificationRequested:
        if self.template is None and self.body is None:
            raise ValueError("either template or body is required")
        return self


# An extra field of a webhook notice payments asks for: the registered endpoint it goes to.
ENDPOINT_ID_FIELD = "endpointId"
# The API client whose notice it is (its user id), on a customer notice the platform asks of itself
# (notifications.services.customer_notify): believed only on a record the platform signed.
CLIENT_ID_FIELD = "clientId"


def notification_requested_event(
    *,
    notification_id: str,
    channel: str,
    recipient: str,
    template_key: str,
    context: dict[str, Any],
    locale: str,
    endpoint_id: str | None = None,
    client_id: int | None = None,
) -> NotificationRequested:
    """A notice the platform asks of itself (a payment's refund or reversal, an order's news)."""
    extra: dict[str, Any] = {ENDPOINT_ID_FIELD: endpoint_id} if endpoint_id else {}
    if client_id is not None:
        extra[CLIENT_ID_FIELD] = client_id
    # Validated, not constructed: `channel` is checked against the channels this domain has.
    return NotificationRequested.model_validate(
        {
            "notificationId": notification_id,
            "channel": channel,
            "recipient": recipient,
            "template": template_key,
            "context": context,
            "locale": locale,
            **extra,
        }
    )


class NotificationSent(BaseModel):
    """notifications.notification-sent."""

    notificationId: str  # noqa: N815
    channel: ChannelName
    recipient: str
    attempts: int
    providerMessageId: str  # noqa: N815


class NotificationFailed(BaseModel):
    """notifications.notification-failed."""

    notificationId: str  # noqa: N815
    channel: ChannelName
    recipient: str
    attempts: int
    reason: str
    message: str = ""


def notification_sent_event(notification: Notification, *, provider_message_id: str) -> NotificationSent:
    return NotificationSent(
        notificationId=notification.notification_id,
        channel=notification.channel,  # type: ignore[arg-type]  # a ChannelName, stored as its value
        recipient=notification.recipient,
        attempts=notification.attempts,
        providerMessageId=provider_message_id,
    )


def notification_failed_event(notification: Notification, *, reason: str, detail: str) -> NotificationFailed:
    return NotificationFailed(
        notificationId=notification.notification_id,
        channel=notification.channel,  # type: ignore[arg-type]  # a ChannelName, stored as its value
        recipient=notification.recipient,
        attempts=notification.attempts,
        reason=reason,
        message=detail[:1000],  # the event carries the start; last_error keeps more
    )


# The types this domain emits and the models of their `data` (bridge/schemas.py publishes their
# JSON Schemas).
EMITTED_EVENTS = {
    topics.NOTIFICATION_SENT.name: NotificationSent,
    topics.NOTIFICATION_FAILED.name: NotificationFailed,
}

# The topics this domain records events on (bridge.consumers.producers; docs/events.md's producers).
PRODUCES = [
    topics.NOTIFICATION_REQUESTED,  # a client's request (API); customer_notify for payments, orders
    topics.NOTIFICATION_SENT,
    topics.NOTIFICATION_FAILED,
    topics.AUDIT_NOTIFICATION_EVENTS,
]
