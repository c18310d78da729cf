"""Delivering queued notifications: one attempt each through its channel's provider, the retry schedule.

A task delivers a batch (email, SMS and push; a webhook is a batch of one) in three steps (see
docs/notifications.md for the crash window):
1. In one transaction: the notifications are locked, each checked (still queued, still claimed by
   this task, endpoint active, rate limit, circuit breaker), and a DeliveryAttempt is written as
   `sending` with its notification `sending`; committed before anything leaves the process.
2. The providers are called one message at a time, outside any transaction, with the notification
   id as idempotency key. For a provider that does not deduplicate by that key, the attempt's
   `handed_over_at` is committed just before its call.
3. In one transaction: each attempt's outcome (status code, latency, provider id or error) and its
   notification's next state: sent, queued for a retry at `next_attempt_at`, or failed, with the
   sent/failed events and audit records in the outbox.
PostgreSQL unreachable during 2 ends the batch: a message whose `handed_over_at` could not be
written never left and is retried. The providers' answers so far are kept in memory and step 3 is
tried again until PostgreSQL is back (at most RECORD_RETRY_FOR_S): an outage must not turn messages
known to be delivered into unknown ones.
A worker lost between 1 and 3 leaves attempts `sending`; the dispatcher resolves them once they are
older than NOTIFICATIONS_SENDING_STUCK_AFTER_S: an attempt that was never handed over is retried; a
handed-over one becomes `unknown`, and its notification is resent with the same idempotency key if
its provider deduplicates by that key, and failed as `outcome_unknown` (never blindly resent) if it
does not.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from core import bulk
from core.backoff import scheduled_delay
from core.logs import safe_error
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

# PostgreSQL gone (refused, dropped, shut down): the errors a batch outlives with what it knows.
DATABASE_DOWN: tuple[type[Exception], ...] = (OperationalError, InterfaceError)
# Step 3 waits for PostgreSQL this long at most (0.5 s doubling to 5 s between tries). The task's
# soft time limit (240 s) may end it sooner; what is left `sending` then is the dispatcher's, as
# for a lost worker, and it acts only after NOTIFICATIONS_SENDING_STUCK_AFTER_S (330 s).
RECORD_RETRY_FOR_S = 180.0
RECORD_RETRY_FIRST_S = 0.5
RECORD_RETRY_MAX_S = 5.0


@dataclass(frozen=True)
class _Started:
    attempt_id: uuid.UUID
    notification_pk: int
    provider: Provider
    message: OutgoingMessage
    breaker_key: str


@dataclass(frozen=True)
class _Outcome:
    started: _Started
    receipt: Receipt | None
    error: DeliveryError | None
    latency_ms: float


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


def _begin(notification: Notification, claim: str, now: datetime) -> _Started | str:
    """Check one locked notification and start its attempt (the caller writes it), or say what became
    of it instead."""
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
    _transition(notification, NotificationStatus.SENDING)
    notification.attempts += 1
    notification.rate_reserved = False
    notification.claim = None
    notification.provider = provider.name
    notification.next_attempt_at = now + timedelta(seconds=settings.NOTIFICATIONS_SENDING_STUCK_AFTER_S)
    notification.updated_at = now
    return _Started(
        attempt_id=uuid.uuid4(),
        notification_pk=notification.pk,
        provider=provider,
        message=message,
        breaker_key=breaker_key,
    )


_STARTED_FIELDS = [
    "status",
    "attempts",
    "rate_reserved",
    "claim",
    "provider",
    "next_attempt_at",
    "updated_at",
]


@transaction.atomic
def _begin_attempts(items: list[tuple[int, str]]) -> list[_Started | str]:
    """Step 1 for a batch: each item's attempt started, or what became of it instead."""
    locked = {
        n.pk: n
        for n in Notification.objects.select_for_update(of=("self",))
        .select_related("webhook_endpoint")
        .filter(pk__in=[pk for pk, _ in items])
        .order_by("pk")  # one lock order for every task: no deadlock between two batches
    }
    now = timezone.now()
    begun: list[_Started | str] = []
    attempts: list[DeliveryAttempt] = []
    for pk, claim in items:
        notification = locked.get(pk)
        if notification is None:
            begun.append("missing")
            continue
        result = _begin(notification, claim, now)
        if isinstance(result, _Started):
            attempts.append(
                DeliveryAttempt(
                    id=result.attempt_id,
                    notification=notification,
                    number=notification.attempts,
                    status=AttemptStatus.SENDING,
                    provider=result.provider.name,
                    idempotency_key=result.message.idempotency_key,
                    started_at=now,
                )
            )
        begun.append(result)
    if attempts:
        DeliveryAttempt.objects.bulk_create(attempts)
        bulk.update_rows([a.notification for a in attempts], _STARTED_FIELDS)
    return begun


def _retry_or_give_up(notification: Notification, *, detail: str) -> None:
    schedule = (
        settings.WEBHOOK_RETRY_SCHEDULE
        if notification.channel == Channel.WEBHOOK
        else settings.NOTIFICATIONS_RETRY_SCHEDULE
    )
    delay = scheduled_delay(notification.retry_step, schedule)
    if delay is None:
        _fail(
            notification,
            reason=FailureReason.RETRIES_EXHAUSTED,
            detail=f"failed after {notification.attempts} attempts: {detail}",
        )
        return
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


def _finish(attempt: DeliveryAttempt, notification: Notification, outcome: _Outcome) -> str:
    """Step 3 for one locked attempt and its notification."""
    receipt, error = outcome.receipt, outcome.error
    was_sending = attempt.status == AttemptStatus.SENDING
    attempt.finished_at = timezone.now()
    attempt.latency_ms = round(outcome.latency_ms, 3)
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
    _apply_failure(notification, outcome.started.provider, error)
    return notification.status


_FINISHED_FIELDS = [
    "status",
    "finished_at",
    "latency_ms",
    "status_code",
    "provider_message_id",
    "error",
    "response_body",
]


def _finish_attempts(outcomes: list[_Outcome]) -> dict[uuid.UUID, str]:
    """Step 3 for a batch, in one transaction whose events and audit records are one insert each."""
    with transaction.atomic(), bulk.deferred_writes():
        notifications = {
            n.pk: n
            for n in Notification.objects.select_for_update()
            .filter(pk__in=[o.started.notification_pk for o in outcomes])
            .order_by("pk")
        }
        attempts = {
            a.pk: a
            for a in DeliveryAttempt.objects.select_for_update().filter(
                pk__in=[o.started.attempt_id for o in outcomes]
            )
        }
        finished = {
            o.started.attempt_id: _finish(
                attempts[o.started.attempt_id], notifications[o.started.notification_pk], o
            )
            for o in outcomes
        }
        bulk.update_rows(list(attempts.values()), _FINISHED_FIELDS)
    return finished


def _breaker_record(started: _Started, error: DeliveryError | None) -> bool:
    """Count the attempt towards its breaker; True when this failure opened it."""
    try:
        if error is None:
            protection.breaker_record_success(started.breaker_key)
        elif error.provider_fault and protection.breaker_record_failure(started.breaker_key):
            logger.warning("circuit breaker %s opened: %s", started.breaker_key, error)
            return True
    except redis.RedisError as exc:
        # Bookkeeping only: the delivery's outcome must still be recorded.
        logger.warning("circuit breaker %s not updated: %s", started.breaker_key, exc)
    return False


def _hand_over(started: _Started) -> None:
    """Before a provider that does not deduplicate is called: committed, so that a lost worker's
    attempt without it is known never to have left (the dispatcher then retries it)."""
    if not started.provider.idempotent:
        DeliveryAttempt.objects.filter(pk=started.attempt_id).update(handed_over_at=timezone.now())


def _not_sent(why: str) -> DeliveryError:
    return DeliveryError("not_sent", f"not sent: {why}", retryable=True, provider_fault=False)


def _send_all(batch: list[_Started]) -> list[_Outcome]:
    """Step 2: each message to its provider in turn. A message whose breaker one of the batch's
    failures opened is not sent (as if it had been deferred). Interrupted by the task's soft time
    limit, the message on its way has an unknown outcome and the ones after it are not sent. With
    PostgreSQL gone before a message could be marked handed over, it and the rest are not sent."""
    outcomes: list[_Outcome] = []
    stopped = ""  # why the rest of the batch is not sent
    opened: set[str] = set()
    for started in batch:
        receipt: Receipt | None = None
        error: DeliveryError | None = None
        began = time.perf_counter()
        if stopped:
            error = _not_sent(stopped)
        elif started.breaker_key in opened:
            error = _not_sent(f"circuit breaker {started.breaker_key} opened during the batch")
        else:
            try:
                _hand_over(started)
            except DATABASE_DOWN as exc:
                stopped = f"the database was unreachable during the batch ({safe_error(exc)})"
                error = _not_sent(stopped)
            else:
                try:
                    receipt = started.provider.send(started.message)
                except DeliveryError as exc:
                    error = exc
                except SoftTimeLimitExceeded:
                    stopped = "the task's soft time limit ended the batch first"
                    error = DeliveryError.unknown("the task's soft time limit interrupted the delivery")
                if _breaker_record(started, error):
                    opened.add(started.breaker_key)
        outcomes.append(_Outcome(started, receipt, error, (time.perf_counter() - began) * 1000))
    return outcomes


def _record_outcomes(outcomes: list[_Outcome]) -> dict[uuid.UUID, str]:
    """Step 3, tried again while PostgreSQL is unreachable (see RECORD_RETRY_FOR_S)."""
    since = time.monotonic()
    wait = RECORD_RETRY_FIRST_S
    while True:
        try:
            return _finish_attempts(outcomes)
        except DATABASE_DOWN as exc:
            if time.monotonic() + wait - since > RECORD_RETRY_FOR_S:
                raise
            logger.warning(
                "notifications: the outcomes of %d deliveries not recorded (%s); trying again in %.1fs",
                len(outcomes),
                safe_error(exc),
                wait,
            )
            if not connection.in_atomic_block:
                connection.close()  # a broken connection is not reopened by Django otherwise
            time.sleep(wait)
            wait = min(wait * 2, RECORD_RETRY_MAX_S)


def notifications_deliver(items: list[tuple[int, str]]) -> list[str]:
    """One delivery attempt of each queued notification (pk, claim) claimed by the calling task:
    what became of each, in order ("sent", "queued" for a retry, "failed", "deferred", "not_claimed"...)."""
    begun = _begin_attempts(items)
    batch = [b for b in begun if isinstance(b, _Started)]
    finished = _record_outcomes(_send_all(batch)) if batch else {}
    return [finished[b.attempt_id] if isinstance(b, _Started) else b for b in begun]


def notification_deliver(*, notification_pk: int, claim: str) -> str:
    """One delivery attempt of a queued notification claimed by the calling task."""
    return notifications_deliver([(notification_pk, claim)])[0]
