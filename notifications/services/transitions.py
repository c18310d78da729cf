"""The state changes every notification use case shares, each with its events, audit record, metrics.

For notifications: the allowed transitions, the claim that hands one to a worker, sent, failed; for
webhook endpoints: a failure counted, disabled. The building blocks of the other service modules,
so it imports none of them.
"""

from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.events import audit_record
from bridge import outbox, topics
from core import metrics, state_machine, tracing
from core.queues import enqueue
from notifications import task_names
from notifications.events import notification_failed_event, notification_sent_event
from notifications.models import (
    TRANSITIONS,
    Channel,
    DeliveryAttempt,
    FailureReason,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
)
from notifications.providers import Receipt

if TYPE_CHECKING:
    from prometheus_client import Counter
    from pydantic import BaseModel

    from bridge.topics import Topic

WORKER_ACTOR = "system:notifications-worker"


class IllegalTransition(state_machine.IllegalTransition):
    """A notification move TRANSITIONS does not allow."""


# A notification's moves are its attempts (DeliveryAttempt), not a status history of their own.
NOTIFICATION_STATES = state_machine.StateMachine(
    noun="notification", moves=TRANSITIONS, id_field="notification_id", error=IllegalTransition
)


def _audit(
    *,
    action: str,
    subject_type: str,
    subject_id: str,
    actor: str,
    details: dict[str, Any],
    correlation_id: str = "",
) -> None:
    outbox.record_event(
        topic=topics.AUDIT_NOTIFICATION_EVENTS,
        subject=subject_id,
        correlation_id=correlation_id or None,
        data=audit_record(
            action=action,
            subject_type=subject_type,
            subject_id=subject_id,
            actor=actor,
            details=details,
        ),
    )


def _transition(notification: Notification, to_status: str) -> None:
    NOTIFICATION_STATES.move(notification, to_status)


def _lease_deadline() -> datetime:
    return timezone.now() + timedelta(seconds=settings.NOTIFICATIONS_DISPATCH_LEASE_S)


def _enqueue_on_commit(notification: Notification) -> None:
    """Give the notification a new claim and hand it to a Celery task once the transaction commits.

    Until the lease runs out nobody else takes it; a task lost on the way is replaced then by the
    dispatcher. A task whose claim is no longer the notification's does nothing. The handoffs of one
    transaction leave together when it commits (`_send_handoffs`): email, SMS and push in tasks of up
    to NOTIFICATIONS_DELIVERY_BATCH notifications, each webhook in a task of its own.
    """
    claim = uuid.uuid4()
    notification.claim = claim
    notification.next_attempt_at = _lease_deadline()
    if not transaction.get_connection().run_on_commit:
        # No sender waits for a commit: what is left belongs to a transaction rolled back.
        _handoffs().clear()
    _handoffs().append((notification, str(claim)))
    # The primary key is read at commit: a new notification is saved after this call. Every
    # handoff registers the sender; the first to run after the commit sends them all, the others
    # find nothing left (a handoff of a savepoint rolled back meanwhile is sent too, and its
    # task, finding no such row or another claim, does nothing).
    tracing.on_commit(_send_handoffs, robust=True)


_pending = threading.local()


def _handoffs() -> list[tuple[Notification, str]]:
    if not hasattr(_pending, "handoffs"):
        _pending.handoffs = []
    handoffs: list[tuple[Notification, str]] = _pending.handoffs
    return handoffs


def _send_handoffs() -> None:
    handoffs, _pending.handoffs = _handoffs(), []
    batch: list[list[object]] = []
    size = max(settings.NOTIFICATIONS_DELIVERY_BATCH, 1)
    for notification, claim in handoffs:
        if notification.pk is None:
            continue  # never saved: its transaction rolled back before the row was written
        if notification.channel == Channel.WEBHOOK:
            # A slow receiver holds up no other: each webhook has a task (and a time limit) of its own.
            enqueue(task_names.DELIVER_NOTIFICATION, notification.pk, claim)
            continue
        batch.append([notification.pk, claim])
        if len(batch) == size:
            enqueue(task_names.DELIVER_NOTIFICATIONS, batch)
            batch = []
    if batch:
        enqueue(task_names.DELIVER_NOTIFICATIONS, batch)


def _announce(
    notification: Notification,
    *,
    topic: Topic,
    data: BaseModel,
    action: str,
    details: dict[str, Any],
    counter: Counter,
) -> None:
    """A notification's final state told: its event in the outbox, its audit record, and its
    counter once the transaction commits."""
    outbox.record_event(
        topic=topic,
        subject=notification.notification_id,
        data=data,
        correlation_id=notification.correlation_id or None,
    )
    _audit(
        action=action,
        subject_type="notification",
        subject_id=notification.notification_id,
        actor=notification.requested_by or WORKER_ACTOR,
        correlation_id=notification.correlation_id,
        details=details,
    )
    channel = notification.channel
    transaction.on_commit(lambda: counter.labels(channel=channel).inc())


def _mark_sent(notification: Notification, attempt: DeliveryAttempt, receipt: Receipt) -> None:
    _transition(notification, NotificationStatus.SENT)
    notification.provider_message_id = receipt.provider_message_id
    notification.sent_at = timezone.now()
    notification.next_attempt_at = None
    notification.claim = None
    notification.failure_reason = ""
    notification.last_error = ""
    notification.save()
    if notification.webhook_endpoint_id:
        WebhookEndpoint.objects.filter(
            pk=notification.webhook_endpoint_id, consecutive_failures__gt=0
        ).update(consecutive_failures=0)
    _announce(
        notification,
        topic=topics.NOTIFICATION_SENT,
        data=notification_sent_event(notification, provider_message_id=receipt.provider_message_id),
        action="notification.sent",
        details={
            "channel": notification.channel,
            "attempts": notification.attempts,
            "provider": attempt.provider,
            "providerMessageId": receipt.provider_message_id,
        },
        counter=metrics.NOTIFICATIONS_SENT,
    )


def _fail(notification: Notification, *, reason: str, detail: str) -> None:
    if notification.pk is not None:
        _transition(notification, NotificationStatus.FAILED)
    notification.status = NotificationStatus.FAILED
    notification.failure_reason = reason
    notification.last_error = detail[:4000]
    notification.failed_at = timezone.now()
    notification.next_attempt_at = None
    notification.claim = None
    notification.save()
    if notification.webhook_endpoint_id and reason == FailureReason.RETRIES_EXHAUSTED:
        _endpoint_record_failure(notification.webhook_endpoint_id, notification)
    _announce(
        notification,
        topic=topics.NOTIFICATION_FAILED,
        data=notification_failed_event(notification, reason=reason, detail=detail),
        action="notification.failed",
        details={"channel": notification.channel, "attempts": notification.attempts, "reason": reason},
        counter=metrics.NOTIFICATIONS_FAILED,
    )


def _endpoint_record_failure(endpoint_id: uuid.UUID, notification: Notification) -> None:
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint_id)
    endpoint.consecutive_failures += 1
    endpoint.save(update_fields=["consecutive_failures", "updated_at"])
    if endpoint.is_active and endpoint.consecutive_failures >= settings.WEBHOOK_DISABLE_AFTER_FAILURES:
        _endpoint_disable(
            endpoint,
            actor=WORKER_ACTOR,
            reason=f"{endpoint.consecutive_failures} notifications in a row failed after every retry "
            f"(last: {notification.notification_id})",
        )


def _endpoint_disable(endpoint: WebhookEndpoint, *, actor: str, reason: str) -> None:
    endpoint.is_active = False
    endpoint.disabled_at = timezone.now()
    endpoint.disabled_reason = reason[:255]
    endpoint.save()
    _audit(
        action="webhook_endpoint.disabled",
        subject_type="webhook_endpoint",
        subject_id=str(endpoint.id),
        actor=actor,
        details={"url": endpoint.url, "reason": reason, "consecutiveFailures": endpoint.consecutive_failures},
    )
