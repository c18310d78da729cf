"""The dispatcher (beat): hands due notifications to workers and resolves attempts whose worker was lost."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from notifications.models import (
    AttemptStatus,
    DeliveryAttempt,
    FailureReason,
    Notification,
    NotificationStatus,
)
from notifications.providers import provider_for
from notifications.services.delivery import _retry_or_give_up
from notifications.services.transitions import _enqueue_on_commit, _fail

DISPATCH_BATCH = 100
DISPATCH_MAX_BATCHES = 20


def _resolve_stuck(notification: Notification) -> None:
    """A `sending` notification past its deadline: its worker was lost before recording the outcome."""
    provider = provider_for(notification.channel)
    lost = DeliveryAttempt.objects.filter(notification=notification, status=AttemptStatus.SENDING)
    if not provider.idempotent and not lost.filter(handed_over_at__isnull=False).exists():
        # Its batch's worker was lost before this message's turn: it never left, so it may go again.
        detail = "not sent: the worker was lost before handing the message over"
        lost.update(status=AttemptStatus.FAILED, finished_at=timezone.now(), error=detail)
        _retry_or_give_up(notification, detail=detail)
        return
    detail = (
        "no outcome recorded: the worker was lost between handing over the message and recording the answer"
    )
    lost.update(status=AttemptStatus.UNKNOWN, finished_at=timezone.now(), error=detail)
    if provider.idempotent:
        _retry_or_give_up(notification, detail=detail + "; resent with the same idempotency key")
    else:
        _fail(notification, reason=FailureReason.OUTCOME_UNKNOWN, detail=detail + "; not resent")


def notifications_dispatch_due() -> int:
    """Hand due notifications to workers and resolve lost attempts; the beat task's body.

    Rows are claimed with FOR UPDATE SKIP LOCKED, so several dispatchers never take the same one.
    """
    handled = 0
    for _ in range(DISPATCH_MAX_BATCHES):
        with transaction.atomic():
            now = timezone.now()
            due = list(
                Notification.objects.select_for_update(skip_locked=True)
                .filter(next_attempt_at__lte=now)
                .order_by("next_attempt_at")[:DISPATCH_BATCH]
            )
            for notification in due:
                if notification.status == NotificationStatus.SENDING:
                    _resolve_stuck(notification)
                if (
                    notification.status == NotificationStatus.QUEUED
                    and notification.next_attempt_at is not None
                    and notification.next_attempt_at <= now
                ):
                    _enqueue_on_commit(notification)
                    notification.save(update_fields=["claim", "next_attempt_at", "updated_at"])
        handled += len(due)
        if len(due) < DISPATCH_BATCH:
            break
    return handled
