"""Notification use cases: queue a notification (requested, or for a payment's outcome), deliver it
through its channel's provider, retry it on the schedule, redeliver it, and manage webhook endpoints.

Once per notificationId: the id is unique in the table, derived notifications have deterministic
ids (`payment:<paymentId>:captured:email`), and the consuming tasks claim their event in the inbox.

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
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import redis
from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from audit.events import audit_record
from bridge import inbox, outbox, task_names, topics
from bridge.codec import Envelope, dumps
from core import metrics, tracing
from core.actors import USER_PREFIX, user_actor
from kafka_platform.celery import enqueue
from notifications import protection, rendering, webhooks
from notifications.events import (
    ENDPOINT_ID_FIELD,
    NotificationRequested,
    notification_failed_event,
    notification_requested_event,
    notification_sent_event,
)
from notifications.models import (
    IN_FLIGHT,
    SYSTEM_ID_PREFIXES,
    TRANSITIONS,
    AttemptStatus,
    Channel,
    DeferReason,
    DeliveryAttempt,
    EndpointKind,
    FailureReason,
    Notification,
    NotificationStatus,
    WebhookEndpoint,
    generate_webhook_secret,
)
from notifications.providers import DeliveryError, OutgoingMessage, Provider, Receipt, provider_for
from notifications.recipients import customer_recipients

logger = logging.getLogger(__name__)

INBOX_CONSUMER = "notifications"
WORKER_ACTOR = "system:notifications-worker"
DISPATCH_BATCH = 100
DISPATCH_MAX_BATCHES = 20
PHONE_RE = re.compile(r"^\+?[1-9]\d{6,14}$")

# Template keys of the payment outcomes this domain announces by itself (CONTRACT, issue 5).
PAYMENT_CAPTURED = "payment_captured"
PAYMENT_FAILED = "payment_failed"


class IllegalTransition(Exception):
    def __init__(self, notification: Notification, to_status: str) -> None:
        super().__init__(
            f"notification {notification.notification_id}: "
            f"{notification.status} -> {to_status} is not allowed"
        )


class NotificationInFlight(Exception):
    """A redelivery asked for while the notification is still queued or sending."""


class EndpointDisabled(Exception):
    pass


class InvalidEndpoint(Exception):
    pass


class ReservedNotificationId(Exception):
    """A notification id under one of the platform's own prefixes, asked for from outside."""


class _Refused(Exception):
    """A notification that is understood but cannot be sent: it is failed at once."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


@dataclass(frozen=True)
class NotificationSpec:
    notification_id: str
    channel: str
    recipient: str
    template_key: str = ""
    locale: str | None = None
    context: dict[str, Any] = field(default_factory=dict)
    subject: str | None = None
    body: str | None = None
    endpoint: WebhookEndpoint | None = None
    correlation_id: str = ""
    source_event_id: str = ""
    # The API client it belongs to (None: nobody's, it came through Kafka) and who asked for it.
    owner_id: int | None = None
    requested_by: str = ""


# --- events, audit, bookkeeping ---------------------------------------------------------------------


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
    if to_status not in TRANSITIONS[notification.status]:
        raise IllegalTransition(notification, to_status)
    notification.status = to_status


def _lease_deadline() -> Any:
    return timezone.now() + timedelta(seconds=settings.NOTIFICATIONS_DISPATCH_LEASE_S)


def _enqueue_on_commit(notification: Notification) -> None:
    """Give the notification a new claim and hand it to a Celery task once the transaction commits.

    Until the lease runs out nobody else takes it; a task lost on the way is replaced then by the
    dispatcher. A task whose claim is no longer the notification's does nothing.
    """
    claim = uuid.uuid4()
    notification.claim = claim
    notification.next_attempt_at = _lease_deadline()
    # The primary key is read at commit: a new notification is saved after this call.
    # In the caller's trace, even when a batch of requests commits after all of them.
    tracing.on_commit(
        lambda: enqueue(task_names.DELIVER_NOTIFICATION, notification.pk, str(claim)), robust=True
    )


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
    data = notification_sent_event(notification, provider_message_id=receipt.provider_message_id)
    outbox.record_event(
        topic=topics.NOTIFICATION_SENT,
        subject=notification.notification_id,
        data=data,
        correlation_id=notification.correlation_id or None,
    )
    _audit(
        action="notification.sent",
        subject_type="notification",
        subject_id=notification.notification_id,
        actor=notification.requested_by or WORKER_ACTOR,
        correlation_id=notification.correlation_id,
        details={
            "channel": notification.channel,
            "attempts": notification.attempts,
            "provider": attempt.provider,
            "providerMessageId": receipt.provider_message_id,
        },
    )
    channel = notification.channel
    transaction.on_commit(lambda: metrics.NOTIFICATIONS_SENT.labels(channel=channel).inc())


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
    data = notification_failed_event(notification, reason=reason, detail=detail)
    outbox.record_event(
        topic=topics.NOTIFICATION_FAILED,
        subject=notification.notification_id,
        data=data,
        correlation_id=notification.correlation_id or None,
    )
    _audit(
        action="notification.failed",
        subject_type="notification",
        subject_id=notification.notification_id,
        actor=notification.requested_by or WORKER_ACTOR,
        correlation_id=notification.correlation_id,
        details={"channel": notification.channel, "attempts": notification.attempts, "reason": reason},
    )
    channel = notification.channel
    transaction.on_commit(lambda: metrics.NOTIFICATIONS_FAILED.labels(channel=channel).inc())


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


# --- queueing -------------------------------------------------------------------------------------


def _check_recipient(channel: str, recipient: str) -> None:
    if channel == Channel.EMAIL:
        try:
            validate_email(recipient)
        except ValidationError as exc:
            raise _Refused(FailureReason.INVALID_RECIPIENT, f"{recipient!r} is not an email address") from exc
    elif channel == Channel.SMS and not PHONE_RE.match(recipient):
        raise _Refused(FailureReason.INVALID_RECIPIENT, f"{recipient!r} is not an E.164 phone number")
    elif channel == Channel.PUSH and not recipient.strip():
        raise _Refused(FailureReason.INVALID_RECIPIENT, "empty push token")
    elif channel == Channel.WEBHOOK:
        try:
            webhooks.check_url_form(recipient)
        except webhooks.ForbiddenTarget as exc:
            raise _Refused(FailureReason.INVALID_RECIPIENT, str(exc)) from exc


def _webhook_body(spec: NotificationSpec, created: str) -> str:
    """The Standard Webhooks payload shape: type, timestamp, data."""
    data = dict(spec.context)
    if spec.subject is not None:
        data.setdefault("subject", spec.subject)
    if spec.body is not None:
        data.setdefault("body", spec.body)
    return dumps({"type": spec.template_key or "notification", "timestamp": created, "data": data}).decode()


def _recipient_endpoint(*, owner_id: int | None, url: str) -> WebhookEndpoint:
    """The endpoint row of a URL given as a recipient, one per owner: an owned one signs with a secret
    of that owner's own (it learns it by rotating the secret), so a delivery made for one client never
    verifies with another's secret or the platform's; an ownerless one signs with the platform secret.
    """
    endpoint, _ = WebhookEndpoint.objects.get_or_create(
        kind=EndpointKind.RECIPIENT,
        owner_id=owner_id,
        url=url,
        defaults={"secret": generate_webhook_secret() if owner_id is not None else "", "event_types": []},
    )
    return endpoint


def _prepare(notification: Notification, spec: NotificationSpec) -> None:
    """Render the message (or build the webhook body); raises _Refused for what cannot be sent."""
    _check_recipient(spec.channel, spec.recipient)
    if spec.channel == Channel.WEBHOOK:
        endpoint = spec.endpoint or _recipient_endpoint(owner_id=spec.owner_id, url=spec.recipient)
        notification.webhook_endpoint = endpoint
        notification.subject = spec.template_key or "notification"
        notification.body = _webhook_body(spec, timezone.now().isoformat().replace("+00:00", "Z"))
        if not endpoint.is_active:
            raise _Refused(FailureReason.ENDPOINT_DISABLED, f"webhook endpoint {endpoint.id} is disabled")
        return
    if spec.template_key:
        try:
            rendered = rendering.render(
                key=spec.template_key, channel=spec.channel, locale=spec.locale, context=spec.context
            )
        except rendering.TemplateNotFound as exc:
            raise _Refused(FailureReason.TEMPLATE_NOT_FOUND, str(exc)) from exc
        except rendering.TemplateError as exc:
            raise _Refused(FailureReason.TEMPLATE_ERROR, str(exc)) from exc
        notification.subject = rendered.subject[:255]
        notification.body = rendered.body
        notification.html_body = rendered.html_body
        notification.template_locale = rendered.locale
    else:
        notification.subject = (spec.subject or "")[:255]
        notification.body = spec.body or ""


def _queue(spec: NotificationSpec) -> Notification | None:
    """Create the notification and hand it to a worker after commit; None if the id exists already.

    Call inside a transaction. A notification that cannot be sent (no template, bad recipient,
    disabled endpoint) is stored as failed and announced at once.
    """
    if Notification.objects.filter(notification_id=spec.notification_id).exists():
        return None
    notification = Notification(
        notification_id=spec.notification_id,
        owner_id=spec.owner_id,
        requested_by=spec.requested_by,
        channel=spec.channel,
        recipient=spec.recipient,
        template_key=spec.template_key,
        locale=spec.locale or "",
        context=spec.context,
        status=NotificationStatus.QUEUED,
        correlation_id=spec.correlation_id,
        source_event_id=spec.source_event_id,
    )
    refused: _Refused | None = None
    try:
        _prepare(notification, spec)
    except _Refused as exc:
        refused = exc
    try:
        with transaction.atomic():
            if refused is not None:
                _fail(notification, reason=refused.reason, detail=str(refused))
                return notification
            _enqueue_on_commit(notification)
            notification.save()
    except IntegrityError:
        # The same notificationId queued concurrently by another delivery of the request.
        if Notification.objects.filter(notification_id=spec.notification_id).exists():
            return None
        raise
    return notification


@transaction.atomic
def notification_request(*, event: Envelope, request: NotificationRequested) -> Notification | None:
    """Queue a requested notification once per notificationId (and once per event)."""
    if not inbox.claim(consumer=INBOX_CONSUMER, event=event):
        return None
    owner_id, requested_by = _request_owner(request)
    return _queue(
        NotificationSpec(
            notification_id=request.notificationId,
            endpoint=_registered_endpoint(request, owner_id=owner_id),
            owner_id=owner_id,
            requested_by=requested_by,
            channel=request.channel,
            recipient=request.recipient,
            template_key=request.template or "",
            locale=request.locale,
            context=request.context,
            subject=request.subject,
            body=request.body,
            correlation_id=event.correlation_id or event.id,
            source_event_id=event.id,
        )
    )


def _registered_endpoint(request: NotificationRequested, *, owner_id: int | None) -> WebhookEndpoint | None:
    """The registered endpoint a webhook request names (`endpointId`, set by
    `payment_customer_notify`), when it is active, at that URL, and its owner's own."""
    endpoint_id = (request.model_extra or {}).get(ENDPOINT_ID_FIELD)
    if request.channel != Channel.WEBHOOK or owner_id is None or not endpoint_id:
        return None
    try:
        endpoint_uuid = uuid.UUID(str(endpoint_id))
    except ValueError:
        return None
    return WebhookEndpoint.objects.filter(
        pk=endpoint_uuid, kind=EndpointKind.REGISTERED, owner_id=owner_id, url=request.recipient
    ).first()


def _payment_client_id(payment_id: str) -> int | None:
    """The API client that requested the payment (None when it came through Kafka or is unknown)."""
    from payments.models import Payment  # the payments domain owns who requested a payment

    return Payment.objects.filter(payment_id=payment_id).values_list("client_id", flat=True).first()


def _request_owner(request: NotificationRequested) -> tuple[int | None, str]:
    """Whom a requested notification belongs to, and the actor who asked for it.

    Requested through the API: the requester (`requestedBy`). Under `payment:<id>:` (payments asks
    for its refund notices on the topic): the payment's client. Otherwise nobody: it came through
    Kafka, whose producers are the platform's service accounts.
    """
    from django.contrib.auth import get_user_model

    if request.requestedBy and request.requestedBy.startswith(USER_PREFIX):
        username = request.requestedBy.removeprefix(USER_PREFIX)
        user_id = get_user_model().objects.filter(username=username).values_list("pk", flat=True).first()
        return user_id, request.requestedBy
    if request.notificationId.startswith("payment:"):
        return _payment_client_id(request.notificationId.split(":", 2)[1]), ""
    return None, ""


def _payment_context(data: dict[str, Any]) -> dict[str, Any]:
    metadata = data.get("metadata") or {}
    context = {
        "paymentId": data["paymentId"],
        "userId": data.get("userId"),
        "merchantId": data.get("merchantId"),
        "amount": data.get("amount"),
        "currency": data.get("currency"),
        "status": data.get("status"),
        "processedAt": data.get("processedAt"),
        "reason": data.get("reason"),
        "message": data.get("message"),
        "orderId": metadata.get("orderId"),
        "description": metadata.get("description"),
    }
    return {k: v for k, v in context.items() if v is not None}


@dataclass(frozen=True)
class _Destination:
    """Where one customer notice goes: `key` ends its notificationId (`email`, `webhook:<id>`)."""

    key: str
    channel: str
    recipient: str
    endpoint: WebhookEndpoint | None = None


def _customer_destinations(
    *, customer: Mapping[str, Any] | None, owner_id: int | None, template_key: str
) -> list[_Destination]:
    """The one mapping of a customer to channels, for every occasion (captures, failures, refunds,
    reversals): each address the customer gave (email, phone, push token, webhookUrl), and the
    registered webhook endpoints of the payment's client that want `template_key`."""
    destinations = [
        _Destination(key=channel, channel=channel, recipient=recipient)
        for channel, recipient in customer_recipients(customer)
    ]
    registered = WebhookEndpoint.objects.filter(
        kind=EndpointKind.REGISTERED, is_active=True, owner_id=owner_id
    )
    destinations += [
        _Destination(
            key=f"{Channel.WEBHOOK}:{endpoint.id}",
            channel=Channel.WEBHOOK,
            recipient=endpoint.url,
            endpoint=endpoint,
        )
        for endpoint in registered
        if endpoint.wants(template_key)
    ]
    return destinations


@transaction.atomic
def payment_outcome_notify(*, event: Envelope) -> list[Notification]:
    """Notify a payment's customer (email, phone, push token, webhookUrl) and the registered webhook
    endpoints that want it, of a captured or failed payment."""
    if not inbox.claim(consumer=INBOX_CONSUMER, event=event):
        return []
    data = event.data
    captured = event.type == topics.PAYMENT_PROCESSED.name
    template_key = PAYMENT_CAPTURED if captured else PAYMENT_FAILED
    base_id = f"payment:{data['paymentId']}:{'captured' if captured else 'failed'}"
    customer = data.get("customer") or {}
    context = _payment_context(data)
    # The notifications belong to the payment's client, and only that client's endpoints hear of it.
    owner_id = _payment_client_id(data["paymentId"])
    specs = [
        NotificationSpec(
            notification_id=f"{base_id}:{destination.key}",
            channel=destination.channel,
            recipient=destination.recipient,
            endpoint=destination.endpoint,
            owner_id=owner_id,
            template_key=template_key,
            locale=customer.get("locale"),
            context=context,
            correlation_id=event.correlation_id or event.id,
            source_event_id=event.id,
        )
        for destination in _customer_destinations(
            customer=customer, owner_id=owner_id, template_key=template_key
        )
    ]
    return [n for spec in specs if (n := _queue(spec)) is not None]


def payment_customer_notify(
    *,
    payment_id: str,
    client_id: int | None,
    customer: Mapping[str, Any] | None,
    occasion: str,
    template_key: str,
    context: dict[str, Any],
    correlation_id: str | None = None,
) -> list[str]:
    """Ask, in the caller's transaction, for the notices of one occasion of a payment (a refund,
    a reversal) on every channel the customer is told on (`_customer_destinations`).

    The requests go out on notifications.notification-requested, ids `payment:<id>:<occasion>:...`,
    and are queued by this domain's consumer as the payment's client's notifications. Returns
    the notificationIds asked for.
    """
    customer = customer or {}
    asked = []
    for destination in _customer_destinations(
        customer=customer, owner_id=client_id, template_key=template_key
    ):
        request = notification_requested_event(
            notification_id=f"payment:{payment_id}:{occasion}:{destination.key}",
            channel=destination.channel,
            recipient=destination.recipient,
            template_key=template_key,
            context=context,
            locale=customer.get("locale") or "en",
            endpoint_id=str(destination.endpoint.id) if destination.endpoint else None,
        )
        outbox.record_event(
            topic=topics.NOTIFICATION_REQUESTED,
            subject=request.notificationId,
            correlation_id=correlation_id,
            data=request,
        )
        asked.append(request.notificationId)
    return asked


@transaction.atomic
def notification_submit(
    *, request: NotificationRequested, user: Any, correlation_id: str | None = None
) -> NotificationRequested:
    """Publish a notification request for `user` (the API's POST): the consumer queues it like any
    other, as `user`'s notification."""
    if request.notificationId.startswith(SYSTEM_ID_PREFIXES):
        raise ReservedNotificationId(
            f"notification ids under {', '.join(SYSTEM_ID_PREFIXES)} are the platform's own"
        )
    actor = user_actor(user)
    request = request.model_copy(update={"requestedBy": actor})
    outbox.record_event(
        topic=topics.NOTIFICATION_REQUESTED,
        subject=request.notificationId,
        data=request.model_dump(exclude_none=True),
        correlation_id=correlation_id,
    )
    _audit(
        action="notification.requested",
        subject_type="notification",
        subject_id=request.notificationId,
        actor=actor,
        correlation_id=correlation_id or "",
        details={"channel": request.channel, "template": request.template},
    )
    return request


# --- delivery -------------------------------------------------------------------------------------


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


# --- the dispatcher (beat) ------------------------------------------------------------------------


def _resolve_stuck(notification: Notification) -> None:
    """A `sending` notification past its deadline: its worker was lost before recording the outcome."""
    provider = provider_for(notification.channel)
    detail = (
        "no outcome recorded: the worker was lost between handing over the message and recording the answer"
    )
    DeliveryAttempt.objects.filter(notification=notification, status=AttemptStatus.SENDING).update(
        status=AttemptStatus.UNKNOWN, finished_at=timezone.now(), error=detail
    )
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


# --- operators ------------------------------------------------------------------------------------


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
