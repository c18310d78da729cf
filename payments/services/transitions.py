"""Building blocks of every payment use case: guarded, recorded transitions and what goes with them."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from audit.events import audit_record
from bridge import outbox, topics
from core import bulk, metrics, state_machine
from core.actors import user_actor
from core.codec import now_rfc3339
from core.money import format_money
from ledger.events import TransactionRequested
from notifications import services as notification_services
from payments.events import FailureReason, payment_failed_event, payment_processed_event
from payments.fraud import FraudHit, fraud_check
from payments.gateway import ChargeResult
from payments.models import TRANSITIONS, Payment, PaymentStatus, PaymentTransition

INBOX_CONSUMER = "payments"
WORKER_ACTOR = "system:payments-worker"
REFUNDABLE = (PaymentStatus.CAPTURED, PaymentStatus.PARTIALLY_REFUNDED)


class IllegalTransition(state_machine.IllegalTransition):
    """A payment move TRANSITIONS does not allow."""


PAYMENT_STATES = state_machine.StateMachine(
    noun="payment",
    moves=TRANSITIONS,
    id_field="payment_id",
    error=IllegalTransition,
    history=PaymentTransition,
    history_fk="payment",
)


class PaymentRefused(Exception):
    """A request that is understood but refused by a business rule."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _audit(payment: Payment, *, action: str, actor: str, details: dict[str, Any]) -> None:
    if actor == WORKER_ACTOR and payment.client_id is not None:
        # The worker finishes what an API client asked for: the client is the actor on record.
        details = {**details, "performedBy": WORKER_ACTOR}
        actor = user_actor(payment.client)
    outbox.record_event(
        topic=topics.AUDIT_PAYMENT_EVENTS,
        subject=payment.payment_id,
        correlation_id=payment.correlation_id,
        data=audit_record(
            action=action,
            subject_type="payment",
            subject_id=payment.payment_id,
            actor=actor,
            details={
                "amount": format_money(payment.amount, payment.currency),
                "currency": payment.currency,
                "userId": payment.user_id,
                "merchantId": payment.merchant_id,
                **details,
            },
        ),
    )


def _transition(payment: Payment, to_status: str, *, actor: str, reason: str = "") -> None:
    """Move `payment` (row locked by the caller) to `to_status`: guarded, recorded, audited."""
    from_status = PAYMENT_STATES.move(payment, to_status, actor=actor, reason=reason)
    _audit(
        payment,
        action=f"payment.{to_status}",
        actor=actor,
        details={"fromStatus": from_status or None, "toStatus": to_status, "reason": reason or None},
    )


def _notify_customer(payment: Payment, *, template: str, occasion: str, context: dict[str, Any]) -> None:
    """Ask notifications, which owns the customer-to-channels mapping, to tell the customer."""
    notification_services.customer_notify(
        notification_prefix=f"payment:{payment.payment_id}:",
        client_id=payment.client_id,
        customer=payment.request.get("customer"),
        occasion=occasion,
        template_key=template,
        context={
            "paymentId": payment.payment_id,
            "amount": format_money(payment.amount, payment.currency),
            "currency": payment.currency,
            "merchantId": payment.merchant_id,
            **context,
        },
        correlation_id=payment.correlation_id,
    )


def _request_ledger_posting(payment: Payment, request: TransactionRequested) -> None:
    """Ask the ledger, on its topic, to post what its own builder made of a refund or settlement."""
    outbox.record_event(
        topic=topics.LEDGER_TRANSACTION_REQUESTED,
        subject=request.transactionId,
        correlation_id=payment.correlation_id,
        data=request,
    )


def _fail(payment: Payment, *, reason: str, message: str, actor: str) -> None:
    payment.failure_reason = reason
    payment.failure_message = message
    payment.processed_at = timezone.now()
    _transition(payment, PaymentStatus.FAILED, actor=actor, reason=reason)
    bulk.update(payment, ["status", "failure_reason", "failure_message", "processed_at"])
    outbox.record_event(
        topic=topics.PAYMENT_FAILED,
        subject=payment.payment_id,
        correlation_id=payment.correlation_id,
        data=payment_failed_event(payment),
    )
    metrics.PAYMENTS_FAILED.labels(reason=reason).inc()


def _capture(payment: Payment, *, result: ChargeResult, actor: str) -> None:
    payment.gateway_reference = result.reference
    payment.processed_at = timezone.now()
    _transition(payment, PaymentStatus.CAPTURED, actor=actor)
    bulk.update(payment, ["status", "gateway_reference", "processed_at"])
    outbox.record_event(
        topic=topics.PAYMENT_PROCESSED,
        subject=payment.payment_id,
        correlation_id=payment.correlation_id,
        data=payment_processed_event(payment, processed_at=now_rfc3339()),
    )
    metrics.PAYMENTS_PROCESSED.inc()


def _check_business_rules(payment: Payment, fraud: Mapping[str, FraudHit | None] | None = None) -> None:
    """Refuse a payment that breaks a rule: validation first, then fraud (`fraud`: the batch's
    fraud checks made already, by paymentId)."""
    if payment.amount <= 0:
        raise PaymentRefused(
            FailureReason.VALIDATION_ERROR, f"amount must be positive, got {payment.amount:f}"
        )
    if payment.currency not in settings.PAYMENTS_SUPPORTED_CURRENCIES:
        raise PaymentRefused(FailureReason.VALIDATION_ERROR, f"currency {payment.currency} is not supported")
    maximum = Decimal(settings.PAYMENTS_MAX_AMOUNT)
    if payment.amount > maximum:
        raise PaymentRefused(
            FailureReason.VALIDATION_ERROR, f"amount {payment.amount:f} exceeds the maximum of {maximum}"
        )
    hit = fraud[payment.payment_id] if fraud and payment.payment_id in fraud else fraud_check(payment)
    if hit:
        raise PaymentRefused(FailureReason.FRAUD_SUSPECTED, hit.message)
