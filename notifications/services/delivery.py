"""Delivering a queued notification: one attempt through its channel's provider, the retry schedule.

A delivery is three steps (see README, "Notifications", for the crash window):
1. In one transaction: the notification is locked, checked (still queued, still claimed by this
   task, endpoint active, rate limit, circuit breaker), and a DeliveryAttempt is written as
   `sending` with the notification `sending`; committed before anything leaves the process.
2. The provider is called, outside any transaction, with the notification id as idempotency key.
3. In one transaction: the attempt's outcome (status code, latency, provider id or error) and
   the notification's next state: sent, queued for a retry at `next_attempt_at`, or failed, with
   the sent/failed event and the audit record in the outbox.
A worker lost between 2 and 3 leaves the attempt `sending`; the dispatcher resolves it once it is
older than NOTIFICATIONS_SENDING_STUCK_AFTER_S: the attempt becomes `unknown`, and the
notification is resent with the same idempotency key if its provider deduplicates by that key,
and failed as `outcome_unknown` (never blindly resent) if it does not.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications import protection
from notifications.models import (
    AttemptStatus,
    Channel,
    DeferReason,
    DeliveryAttempt,
    FailureReason,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
)
from notifications.providers import DeliveryError, OutgoingMessage, Provider, Receipt, provider_for
from notifications.services.transitions import (
    WORKER_ACTOR,
    _endpoint_disable,
    _fail,
    _mark_sent,
    _transition,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Started:
    attempt_id: uuid.UUID
    provider: Provider
    message: OutgoingMessage
    breaker_key: str


def _outgoing_message(notification: Notification) -> OutgoingMessage:
    secret = ""
    if notification.channel == Channel.WEBHOOK:
        endpoint = notification.webhook_endpoint
        secret = (endpoint.secret if endpoint else "") or settings.WEBHOOK_SIGNING_SECRET
    return OutgoingMessage(
        notification_id=notification.notification_id,
        channel=notification.channel,
        recipient=notification.recipient,
        subject=notification.subject,
        body=notification.body,
        html_body=notification.html_body,
        idempotency_key=notification.notification_id,
        signing_secret=secret,
    )


def _defer(notification: Notification, *, reason: str, wait_s: float) -> None:
    notification.next_attempt_at = timezone.now() + timedelta(seconds=wait_s)
    notification.claim = None
    notification.deferrals += 1
    notification.deferred_reason = reason
    notification.save()


@transaction.atomic
def _begin_attempt(notification_pk: int, claim: str) -> _Started | str:
    notification = Notification.objects.select_for_update().filter(pk=notification_pk).first()
    if notification is None:
        return "missing"
    if notification.status != NotificationStatus.QUEUED or str(notification.claim) != claim:
        return "not_claimed"  # a stale or duplicate task: another one owns this notification
    if notification.channel == Channel.WEBHOOK:
        endpoint = notification.webhook_endpoint
        if endpoint is None or not endpoint.is_active:
            _fail(
                notification,
                reason=FailureReason.ENDPOINT_DISABLED,
                detail="the webhook endpoint is disabled",
            )
            return "failed"
    provider = provider_for(notification.channel)
    message = _outgoing_message(notification)
    if not notification.rate_reserved:
        wait = protection.rate_limit_reserve(channel=notification.channel, recipient=notification.recipient)
        if wait > 0:
            # The reserved token stays this notification's: it will not queue again for the limit.
            notification.rate_reserved = True
            _defer(notification, reason=DeferReason.RATE_LIMITED, wait_s=wait)
            return "deferred"
    breaker_key = provider.breaker_key(message)
    decision = protection.breaker_check(breaker_key)
    if not decision.allowed:
        notification.rate_reserved = True
        _defer(notification, reason=DeferReason.CIRCUIT_OPEN, wait_s=decision.retry_after_s)
        return "deferred"
    now = timezone.now()
    attempt = DeliveryAttempt.objects.create(
        notification=notification,
        number=notification.attempts + 1,
        status=AttemptStatus.SENDING,
        provider=provider.name,
        idempotency_key=message.idempotency_key,
        started_at=now,
    )
    _transition(notification, NotificationStatus.SENDING)
    notification.attempts += 1
    notification.rate_reserved = False
    notification.claim = None
    notification.provider = provider.name
    notification.next_attempt_at = now + timedelta(seconds=settings.NOTIFICATIONS_SENDING_STUCK_AFTER_S)
    notification.save()
    return _Started(attempt_id=attempt.id, provider=provider, message=message, breaker_key=breaker_key)


def _retry_or_give_up(notification: Notification, *, detail: str) -> None:
    schedule = (
        settings.WEBHOOK_RETRY_SCHEDULE
        if notification.channel == Channel.WEBHOOK
        else settings.NOTIFICATIONS_RETRY_SCHEDULE
    )
    if notification.retry_step >= len(schedule):
        _fail(
            notification,
            reason=FailureReason.RETRIES_EXHAUSTED,
            detail=f"failed after {notification.attempts} attempts: {detail}",
        )
        return
    delay = schedule[notification.retry_step]
    _transition(notification, NotificationStatus.QUEUED)
    notification.retry_step += 1
    notification.next_attempt_at = timezone.now() + timedelta(seconds=delay)
    notification.last_error = detail[:4000]
    notification.save()


def _apply_failure(notification: Notification, provider: Provider, error: DeliveryError) -> None:
    detail = str(error)
    if error.endpoint_gone and notification.webhook_endpoint_id:
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=notification.webhook_endpoint_id)
        if endpoint.is_active:
            _endpoint_disable(endpoint, actor=WORKER_ACTOR, reason=detail)
        _fail(notification, reason=FailureReason.ENDPOINT_DISABLED, detail=detail)
    elif error.outcome_unknown and not provider.idempotent:
        _fail(notification, reason=FailureReason.OUTCOME_UNKNOWN, detail=detail)
    elif error.retryable:
        _retry_or_give_up(notification, detail=detail)
    else:
        reason = (
            FailureReason.FORBIDDEN_TARGET if error.reason == "forbidden_target" else FailureReason.REJECTED
        )
        _fail(notification, reason=reason, detail=detail)


@transaction.atomic
def _finish_attempt(
    started: _Started, *, receipt: Receipt | None, error: DeliveryError | None, latency_ms: float
) -> str:
    attempt = DeliveryAttempt.objects.get(pk=started.attempt_id)
    notification = Notification.objects.select_for_update().get(pk=attempt.notification_id)
    attempt = DeliveryAttempt.objects.select_for_update().get(pk=started.attempt_id)
    was_sending = attempt.status == AttemptStatus.SENDING
    attempt.finished_at = timezone.now()
    attempt.latency_ms = round(latency_ms, 3)
    if receipt is not None:
        attempt.status = AttemptStatus.SENT
        attempt.status_code = receipt.status_code
        attempt.provider_message_id = receipt.provider_message_id
    else:
        assert error is not None
        attempt.status = AttemptStatus.UNKNOWN if error.outcome_unknown else AttemptStatus.FAILED
        attempt.status_code = error.status_code
        attempt.error = f"{error.reason}: {error}"[:4000]
        attempt.response_body = error.response_body[:4000]
    attempt.save()
    if not was_sending:
        # The dispatcher gave this attempt up as lost meanwhile. A late success still counts.
        if receipt is not None and notification.status == NotificationStatus.QUEUED:
            _transition(notification, NotificationStatus.SENDING)
            _mark_sent(notification, attempt, receipt)
        return "late"
    if receipt is not None:
        _mark_sent(notification, attempt, receipt)
        return NotificationStatus.SENT
    assert error is not None
    _apply_failure(notification, started.provider, error)
    return notification.status


def _breaker_record(started: _Started, error: DeliveryError | None) -> None:
    try:
        if error is None:
            protection.breaker_record_success(started.breaker_key)
        elif error.provider_fault and protection.breaker_record_failure(started.breaker_key):
            logger.warning("circuit breaker %s opened: %s", started.breaker_key, error)
    except redis.RedisError as exc:
        # Bookkeeping only: the delivery's outcome must still be recorded.
        logger.warning("circuit breaker %s not updated: %s", started.breaker_key, exc)


def notification_deliver(*, notification_pk: int, claim: str) -> str:
    """One delivery attempt of a queued notification claimed by the calling task."""
    started = _begin_attempt(notification_pk, claim)
    if isinstance(started, str):
        return started
    receipt: Receipt | None = None
    error: DeliveryError | None = None
    began = time.perf_counter()
    try:
        receipt = started.provider.send(started.message)
    except DeliveryError as exc:
        error = exc
    except SoftTimeLimitExceeded:
        error = DeliveryError.unknown("the task's soft time limit interrupted the delivery")
    latency_ms = (time.perf_counter() - began) * 1000
    _breaker_record(started, error)
    return _finish_attempt(started, receipt=receipt, error=error, latency_ms=latency_ms)
