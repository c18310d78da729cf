"""Reads of the notifications domain for the API and the admin, each limited to what the user may see.

A client sees its own notifications and webhook endpoints; whoever holds the view permission of the
model (operators, auditors) sees all of them. Nobody changes another's endpoint through the API:
operators do that in the admin.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch, QuerySet

from notifications.models import DeliveryAttempt, Notification, WebhookEndpoint

VIEW_ALL_NOTIFICATIONS = "notifications.view_notification"
VIEW_ALL_ENDPOINTS = "notifications.view_webhookendpoint"


def notifications_visible_to(user: Any) -> QuerySet[Notification]:
    rows = Notification.objects.all()
    return rows if user.has_perm(VIEW_ALL_NOTIFICATIONS) else rows.filter(owner=user)


def notification_list(
    *,
    user: Any,
    status: str | None = None,
    channel: str | None = None,
    recipient: str | None = None,
    owner: str | None = None,
) -> QuerySet[Notification]:
    """`owner`: the username of the API client the notifications belong to (`?user=`)."""
    rows = notifications_visible_to(user)
    if status:
        rows = rows.filter(status=status)
    if channel:
        rows = rows.filter(channel=channel)
    if recipient:
        rows = rows.filter(recipient=recipient)
    if owner:
        rows = rows.filter(owner__username=owner)
    return rows.order_by("-created_at", "-id")


def notification_with_attempts(*, user: Any) -> QuerySet[Notification]:
    return notifications_visible_to(user).prefetch_related(
        Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("number"))
    )


def webhook_endpoint_list(*, user: Any, to_change: bool = False) -> QuerySet[WebhookEndpoint]:
    """The endpoints `user` may read, or with `to_change` the ones it may change (its own)."""
    rows = WebhookEndpoint.objects.order_by("-created_at")
    if to_change or not user.has_perm(VIEW_ALL_ENDPOINTS):
        rows = rows.filter(owner=user)
    return rows
