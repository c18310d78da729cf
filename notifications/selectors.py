"""Reads of the notifications domain for the API and the admin."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from notifications.models import DeliveryAttempt, Notification, WebhookEndpoint


def notification_list(
    *, status: str | None = None, channel: str | None = None, recipient: str | None = None
) -> QuerySet[Notification]:
    rows = Notification.objects.all()
    if status:
        rows = rows.filter(status=status)
    if channel:
        rows = rows.filter(channel=channel)
    if recipient:
        rows = rows.filter(recipient=recipient)
    return rows.order_by("-created_at", "-id")


def notification_with_attempts() -> QuerySet[Notification]:
    return Notification.objects.prefetch_related(
        Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("number"))
    )


def webhook_endpoint_list() -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.order_by("-created_at")
