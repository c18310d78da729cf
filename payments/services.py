"""Payment use cases: accept a request, charge it through the gateway, record the outcome.

A request is accepted once per paymentId; the charge uses the paymentId as the gateway's
idempotency key, so a retry after a timeout (or a redelivered task after a crash) can never
capture twice. Every status change is recorded, audited and announced through the outbox in
the same transaction as the change.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from bridge import inbox, outbox, topics
from bridge.codec import Envelope, now_rfc3339
from kafka_platform import metrics
from payments.events import FailureReason, PaymentRequested
from payments.gateway import ChargeResult, get_gateway
from payments.models import TRANSITIONS, Payment, PaymentStatus, PaymentTransition

logger = logging.getLogger(__name__)

INBOX_CONSUMER = "payments"
WORKER_ACTOR = "system:payments-worker"


class IllegalTransition(Exception):
    def __init__(self, payment: Payment, to_status: str) -> None:
        super().__init__(f"payment {payment.payment_id}: {payment.status} -> {to_status} is not allowed")


class PaymentRefused(Exception):
    """A request that is understood but refused by a business rule."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _transition(payment: Payment, to_status: str, *, actor: str, reason: str = "") -> None:
    """Move `payment` to `to_status` (row locked by the caller), recorded and audited."""
    from_status = payment.status
    if from_status and to_status not in TRANSITIONS[from_status]:
        raise IllegalTransition(payment, to_status)
    payment.status = to_status
    PaymentTransition.objects.create(
        payment=payment, from_status=from_status, to_status=to_status, actor=actor, reason=reason
    )
    outbox.record_event(
        topic=topics.AUDIT_PAYMENT_EVENTS,
        subject=payment.payment_id,
        correlation_id=payment.correlation_id,
        data={
            "action": f"payment.{to_status}",
            "subjectType": "payment",
            "subjectId": payment.payment_id,
            "actor": actor,
            "details": {
                "fromStatus": from_status or None,
                "toStatus": to_status,
                "reason": reason or None,
                "amount": f"{payment.amount:f}",
                "currency": payment.currency,
                "userId": payment.user_id,
                "merchantId": payment.merchant_id,
            },
        },
    )


def _check_business_rules(request: PaymentRequested) -> None:
    if request.amount <= 0:
        raise PaymentRefused(FailureReason.VALIDATION_ERROR, f"amount must be positive, got {request.amount}")
    if request.currency not in settings.PAYMENTS_SUPPORTED_CURRENCIES:
        raise PaymentRefused(FailureReason.VALIDATION_ERROR, f"currency {request.currency} is not supported")
    maximum = Decimal(settings.PAYMENTS_MAX_AMOUNT)
    if request.amount > maximum:
        raise PaymentRefused(
            FailureReason.VALIDATION_ERROR, f"amount {request.amount} exceeds the maximum of {maximum}"
        )


def _fail(payment: Payment, *, reason: str, message: str, actor: str) -> None:
    payment.failure_reason = reason
    payment.failure_message = message
    payment.processed_at = timezone.now()
    _transition(payment, PaymentStatus.FAILED, actor=actor, reason=reason)
    payment.save()
    outbox.record_event(
        topic=topics.PAYMENT_FAILED,
        subject=payment.payment_id,
        correlation_id=payment.correlation_id,
        data={**payment.request, "reason": reason, "message": message},
    )
    metrics.PAYMENTS_FAILED.labels(reason=reason).inc()


def _capture(payment: Payment, *, result: ChargeResult, actor: str) -> None:
    payment.gateway_reference = result.reference
    payment.processed_at = timezone.now()
    _transition(payment, PaymentStatus.CAPTURED, actor=actor)
    payment.save()
    outbox.record_event(
        topic=topics.PAYMENT_PROCESSED,
        subject=payment.payment_id,
        correlation_id=payment.correlation_id,
        data={**payment.request, "status": PaymentStatus.CAPTURED.value, "processedAt": now_rfc3339()},
    )
    metrics.PAYMENTS_PROCESSED.inc()


@transaction.atomic
def payment_accept(*, event: Envelope, request: PaymentRequested) -> Payment:
    """Record the request once per paymentId and move it to processing, or fail a refused one.

    Idempotent: a redelivered or repeated request returns the existing payment unchanged.
    """
    payment, created = Payment.objects.select_for_update().get_or_create(
        payment_id=request.paymentId,
        defaults={
            "user_id": request.userId,
            "merchant_id": request.merchantId,
            "amount": request.amount,
            "currency": request.currency,
            "status": "",
            "request": event.data,
            "correlation_id": event.correlation_id or event.id,
        },
    )
    if not created:
        if payment.is_decided:
            inbox.claim(consumer=INBOX_CONSUMER, event=event)
        return payment
    _transition(payment, PaymentStatus.REQUESTED, actor=WORKER_ACTOR)
    try:
        _check_business_rules(request)
    except PaymentRefused as refused:
        _fail(payment, reason=refused.reason, message=str(refused), actor=WORKER_ACTOR)
        inbox.claim(consumer=INBOX_CONSUMER, event=event)
        return payment
    _transition(payment, PaymentStatus.PROCESSING, actor=WORKER_ACTOR)
    payment.save()
    return payment


def payment_charge(*, event: Envelope, payment_id: str) -> Payment:
    """Charge through the gateway and record the outcome; raises GatewayTimeout when unknown."""
    payment = Payment.objects.get(payment_id=payment_id)
    if payment.status != PaymentStatus.PROCESSING:
        return payment
    result = get_gateway().charge(
        idempotency_key=payment.payment_id,
        amount=payment.amount,
        currency=payment.currency,
        method=payment.request["paymentMethod"],
    )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if payment.status != PaymentStatus.PROCESSING:
            return payment  # a concurrent delivery recorded the (same) outcome first
        if result.captured:
            _capture(payment, result=result, actor=WORKER_ACTOR)
        else:
            _fail(payment, reason=result.decline_reason, message=result.message, actor=WORKER_ACTOR)
        inbox.claim(consumer=INBOX_CONSUMER, event=event)
    return payment


@transaction.atomic
def payment_give_up(*, event: Envelope, payment_id: str, reason: str, message: str) -> Payment:
    """Fail a payment still processing, e.g. after the gateway's retries ran out."""
    payment = Payment.objects.select_for_update().get(payment_id=payment_id)
    if payment.status == PaymentStatus.PROCESSING:
        _fail(payment, reason=reason, message=message, actor=WORKER_ACTOR)
        inbox.claim(consumer=INBOX_CONSUMER, event=event)
    return payment


@transaction.atomic
def payment_abandon(*, event: Envelope, message: str) -> Payment | None:
    """Fail an undecided payment whose processing crashed for good (its task is dead-lettered)."""
    payment_id = event.data.get("paymentId")
    payment = Payment.objects.select_for_update().filter(payment_id=payment_id).first()
    if payment is not None and not payment.is_decided and payment.status:
        _fail(payment, reason=FailureReason.PROCESSING_ERROR, message=message, actor=WORKER_ACTOR)
    return payment


def already_handled(event: Envelope) -> bool:
    return inbox.seen(consumer=INBOX_CONSUMER, event=event)
