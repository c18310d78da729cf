"""The compensating saga: a captured payment the ledger refused is refunded, reversed and announced."""

from __future__ import annotations

import logging

from django.db import transaction

from audit.services import ComplianceRuleName, Severity, compliance_alert_raise
from bridge import inbox
from bridge.codec import Envelope
from ledger import postings
from ledger import selectors as ledger_selectors
from payments.gateway import gateway_breaker, get_gateway
from payments.models import Payment, PaymentStatus, SagaStep
from payments.services.transitions import INBOX_CONSUMER, _notify_customer, _transition

logger = logging.getLogger(__name__)


def _saga_step(payment: Payment, step: str, status: str, detail: str = "") -> None:
    SagaStep.objects.get_or_create(payment=payment, step=step, defaults={"status": status, "detail": detail})


def _refusal_of_posted_capture(
    payment: Payment, *, event: Envelope, transaction_id: str, reason: str
) -> None:
    """A refusal names a capture the ledger has posted: the merchant holds the money, so the
    customer must not get it back too. Nothing is reversed; auditors find out how it came."""
    logger.error(
        "ledger.transaction-failed for %s (%s) but the ledger posted it: payment %s not reversed",
        transaction_id,
        reason,
        payment.payment_id,
    )
    compliance_alert_raise(
        rule=ComplianceRuleName.RECONCILIATION_MISMATCH.value,
        severity=Severity.HIGH.value,
        subject=f"payment:{payment.payment_id}",
        details={
            "check": "refusal_of_posted_capture",
            "paymentId": payment.payment_id,
            "transactionId": transaction_id,
            "reason": reason,
            "paymentStatus": payment.status,
        },
        dedupe_key=f"{ComplianceRuleName.RECONCILIATION_MISMATCH.value}:refusal-of-posted:{transaction_id}",
        source_event_id=event.id,
        correlation_id=event.correlation_id or "",
    )


def payment_compensate(*, event: Envelope, transaction_id: str, reason: str, message: str) -> Payment | None:
    """The ledger refused to post a captured payment: refund it at the gateway, mark it reversed,
    tell the customer. Each step is recorded; a redelivered refusal resumes where it stopped.

    Only a capture the ledger never posted is reversed: a refusal may name `payment:<id>` while
    being about another request under that id, so the ledger is asked whether it posted it.
    """
    payment_id = postings.payment_id_of(transaction_id)
    if payment_id is None:
        return None
    with transaction.atomic():
        payment = Payment.objects.select_for_update().filter(payment_id=payment_id).first()
        if payment is None or payment.status != PaymentStatus.CAPTURED:
            inbox.claim(consumer=INBOX_CONSUMER + ".saga", event=event)
            return payment
        if ledger_selectors.transaction_posted(transaction_id):
            _refusal_of_posted_capture(payment, event=event, transaction_id=transaction_id, reason=reason)
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
            # Another copy of this refusal reversed it meanwhile: claimed as above, so that this
            # copy too leaves its trace (the inbox logs its refusal).
            inbox.claim(consumer=INBOX_CONSUMER + ".saga", event=event)
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
