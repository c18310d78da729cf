"""The compensating saga: a captured payment the ledger refused is refunded, reversed and announced."""

from __future__ import annotations

from django.db import transaction

from bridge import inbox
from bridge.codec import Envelope
from ledger import postings
from payments.gateway import gateway_breaker, get_gateway
from payments.models import Payment, PaymentStatus, SagaStep
from payments.services.transitions import INBOX_CONSUMER, _notify_customer, _transition


def _saga_step(payment: Payment, step: str, status: str, detail: str = "") -> None:
    SagaStep.objects.get_or_create(payment=payment, step=step, defaults={"status": status, "detail": detail})


def payment_compensate(*, event: Envelope, transaction_id: str, reason: str, message: str) -> Payment | None:
    """The ledger refused to post a captured payment: refund it at the gateway, mark it reversed,
    tell the customer. Each step is recorded; a redelivered refusal resumes where it stopped."""
    payment_id = postings.payment_id_of(transaction_id)
    if payment_id is None:
        return None
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(payment_id=payment_id).first()
        if payment is None or payment.status != PaymentStatus.CAPTURED:
            inbox.claim(consumer=INBOX_CONSUMER + ".saga", event=event)
            return payment
        _saga_step(payment, "ledger_refused", "done", f"{reason}: {message}")
    gateway = get_gateway()
    captured: Payment = payment  # narrowed above; the lambda below cannot see that
    result = gateway_breaker().call(
        lambda: gateway.refund(
            idempotency_key=f"reversal:{captured.payment_id}",
            charge_reference=captured.gateway_reference,
            amount=captured.refundable_amount,
            currency=captured.currency,
        )
    )
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        if payment.status != PaymentStatus.CAPTURED:
            return payment
        _saga_step(payment, "gateway_refund", "done", result.reference)
        payment.refunded_amount = payment.amount
        _transition(
            payment,
            PaymentStatus.REVERSED,
            actor="system:payments-saga",
            reason=f"ledger refused the posting: {reason}",
        )
        payment.save()
        _saga_step(payment, "reversed", "done")
        _notify_customer(
            payment, template="payment_reversed", occasion="reversed", context={"reason": reason}
        )
        _saga_step(payment, "customer_notified", "done")
        inbox.claim(consumer=INBOX_CONSUMER + ".saga", event=event)
    return payment
