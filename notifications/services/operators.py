"""Operators' actions: redeliver a notification; register, rotate, update and delete webhook endpoints."""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from core.actors import user_actor
from notifications import webhooks
from notifications.models import (
    IN_FLIGHT,
    Channel,
    EndpointKind,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
    generate_webhook_secret,
)
from notifications.services.transitions import _audit, _endpoint_disable, _enqueue_on_commit, _transition


class NotificationInFlight(Exception):
    """A redelivery asked for while the notification is still queued or sending."""


class EndpointDisabled(Exception):
    pass


class InvalidEndpoint(Exception):
    pass


@transaction.atomic
def notification_redeliver(*, notification_id: str, actor: str) -> Notification:
    """Send a sent or failed notification again, from the start of its retry schedule."""
    notification = Notification.objects.select_for_update().get(notification_id=notification_id)
    if notification.status in IN_FLIGHT:
        raise NotificationInFlight(f"notification {notification_id} is {notification.status}")
    endpoint = notification.webhook_endpoint
    if notification.channel == Channel.WEBHOOK and (endpoint is None or not endpoint.is_active):
        raise EndpointDisabled(f"the webhook endpoint of {notification_id} is disabled")
    previous = notification.status
    _transition(notification, NotificationStatus.QUEUED)
    notification.retry_step = 0
    notification.failure_reason = ""
    notification.last_error = ""
    notification.failed_at = None
    _enqueue_on_commit(notification)
    notification.save()
    _audit(
        action="notification.redelivered",
        subject_type="notification",
        subject_id=notification.notification_id,
        actor=actor,
        correlation_id=notification.correlation_id,
        details={"channel": notification.channel, "previousStatus": previous},
    )
    return notification


@transaction.atomic
def webhook_endpoint_register(
    *, url: str, event_types: list[str], owner: Any | None, description: str = "", actor: str
) -> WebhookEndpoint:
    """A new endpoint of `owner` (None: the platform's) with a generated secret; its URL must reach
    a public address (or an allowed one). The caller shows the secret once, now."""
    try:
        webhooks.check_url(url)
    except webhooks.ForbiddenTarget as exc:
        raise InvalidEndpoint(str(exc)) from exc
    endpoint = WebhookEndpoint.objects.create(
        url=url,
        owner=owner,
        kind=EndpointKind.REGISTERED,
        event_types=event_types,
        description=description,
        secret=generate_webhook_secret(),
    )
    _audit(
        action="webhook_endpoint.registered",
        subject_type="webhook_endpoint",
        subject_id=str(endpoint.id),
        actor=actor,
        details={"url": url, "eventTypes": event_types, "owner": _owner_actor(endpoint)},
    )
    return endpoint


def _owner_actor(endpoint: WebhookEndpoint) -> str | None:
    return user_actor(endpoint.owner) if endpoint.owner is not None else None


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint_id: uuid.UUID, actor: str) -> WebhookEndpoint:
    """A new secret for the endpoint, signing every delivery from now on (also retries of earlier
    notifications: each attempt is signed when it is made). The caller shows it once, now."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    endpoint.secret = generate_webhook_secret()
    endpoint.save(update_fields=["secret", "updated_at"])
    _audit(
        action="webhook_endpoint.secret_rotated",
        subject_type="webhook_endpoint",
        subject_id=str(endpoint.id),
        actor=actor,
        details={"url": endpoint.url, "kind": endpoint.kind},
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *,
    endpoint_id: uuid.UUID,
    actor: str,
    url: str | None = None,
    event_types: list[str] | None = None,
    description: str | None = None,
    is_active: bool | None = None,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    changes: dict[str, Any] = {}
    if endpoint.kind == EndpointKind.RECIPIENT and (
        (url is not None and url != endpoint.url)
        or (event_types is not None and list(event_types) != list(endpoint.event_types))
    ):
        # Its URL is the customer's webhookUrl it stands for, and it receives no fan-out.
        raise InvalidEndpoint("the URL and event types of a recipient endpoint cannot be changed")
    if url is not None and url != endpoint.url:
        try:
            webhooks.check_url(url)
        except webhooks.ForbiddenTarget as exc:
            raise InvalidEndpoint(str(exc)) from exc
        endpoint.url = changes["url"] = url
    if event_types is not None:
        endpoint.event_types = changes["eventTypes"] = event_types
    if description is not None:
        endpoint.description = description
    if is_active is True and not endpoint.is_active:
        endpoint.is_active = changes["isActive"] = True
        endpoint.consecutive_failures = 0
        endpoint.disabled_at = None
        endpoint.disabled_reason = ""
        action = "webhook_endpoint.enabled"
    elif is_active is False and endpoint.is_active:
        _endpoint_disable(endpoint, actor=actor, reason=f"disabled by {actor}")
        return endpoint
    else:
        action = "webhook_endpoint.updated"
    endpoint.save()
    _audit(
        action=action,
        subject_type="webhook_endpoint",
        subject_id=str(endpoint.id),
        actor=actor,
        details=changes,
    )
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint_id: uuid.UUID, actor: str) -> None:
    """Remove an endpoint; its past notifications keep their URL and lose the link."""
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    _audit(
        action="webhook_endpoint.deleted",
        subject_type="webhook_endpoint",
        subject_id=str(endpoint.id),
        actor=actor,
        details={"url": endpoint.url},
    )
    endpoint.delete()
