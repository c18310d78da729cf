"""Refunds: an amount reserved, refunded at the gateway, recorded, posted and announced, or given back."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from core.money import MoneyError, check_precision, format_money
from core.queues import enqueue_on_commit
from ledger import postings
from payments import task_names
from payments.gateway import gateway_breaker, get_gateway
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from payments.services.transitions import (
    REFUNDABLE,
    WORKER_ACTOR,
    _audit,
    _notify_customer,
    _request_ledger_posting,
    _transition,
)


class RefundRefused(Exception):
    """A refund that cannot be made (wrong status, more than is left)."""


class RefundInvalid(ValueError):
    """A refund amount that is not money in the payment's currency (e.g. too many decimals)."""


@transaction.atomic
def refund_request(*, payment_id: str, amount: Decimal | None, reason: str, actor: str) -> Refund:
    """Reserve a refund of `amount` (default: all that is left) and have the gateway make it."""
    payment = Payment.objects.select_for_update().get(payment_id=payment_id)
    if payment.status not in REFUNDABLE:
        raise RefundRefused(f"payment {payment_id} is {payment.status}; only captured payments are refunded")
    if amount is not None:
        try:
            # "0.001" USD is not an amount the gateway and the ledger can agree on.
            amount = check_precision(amount, payment.currency)
        except MoneyError as exc:
            raise RefundInvalid(str(exc)) from None
    amount = payment.refundable_amount if amount is None else amount
    if amount <= 0:
        raise RefundRefused(f"refund amount must be positive, got {amount:f}")
    if amount > payment.refundable_amount:
        left = f"{payment.refundable_amount:f} {payment.currency}"
        raise RefundRefused(f"refund of {amount:f} exceeds the {left} left to refund")
    payment.refunded_amount += amount
    payment.save(update_fields=["refunded_amount", "updated_at"])
    refund = Refund.objects.create(
        refund_id=f"re_{uuid.uuid4().hex[:20]}",
        payment=payment,
        amount=amount,
        reason=reason,
        requested_by=actor,
    )
    _audit(
        payment,
        action="refund.requested",
        actor=actor,
        details={
            "refundId": refund.refund_id,
            "refundAmount": format_money(amount, payment.currency),
            "reason": reason,
        },
    )
    enqueue_on_commit(task_names.PROCESS_REFUND, refund.refund_id)
    return refund


def refund_process(*, refund_id: str) -> Refund:
    """Refund at the gateway (idempotent by refund id), then record, post and notify."""
    refund = Refund.objects.select_related("payment").get(refund_id=refund_id)
    if refund.status != RefundStatus.REQUESTED:
        return refund
    payment = refund.payment
    gateway = get_gateway()
    result = gateway_breaker().call(
        lambda: gateway.refund(
            idempotency_key=refund.refund_id,
            charge_reference=payment.gateway_reference,
            amount=refund.amount,
            currency=payment.currency,
        )
    )
    with transaction.atomic():
        refund = Refund.objects.select_for_update().get(pk=refund.pk)
        if refund.status != RefundStatus.REQUESTED:
            return refund
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        refund.status = RefundStatus.SUCCEEDED
        refund.gateway_reference = result.reference
        refund.completed_at = timezone.now()
        refund.save()
        fully = (
            payment.refunded_amount >= payment.amount
            and not payment.refunds.filter(status=RefundStatus.REQUESTED).exclude(pk=refund.pk).exists()
        )
        to_status = PaymentStatus.REFUNDED if fully else PaymentStatus.PARTIALLY_REFUNDED
        _transition(payment, to_status, actor=refund.requested_by, reason=f"refund {refund.refund_id}")
        payment.save()
        _request_ledger_posting(
            payment,
            postings.refund_posting(
                payment_id=payment.payment_id,
                refund_id=refund.refund_id,
                merchant_id=payment.merchant_id,
                amount=refund.amount,
                currency=payment.currency,
            ),
        )
        _notify_customer(
            payment,
            template="payment_refunded",
            occasion=f"refunded:{refund.refund_id}",
            context={"refundAmount": format_money(refund.amount, payment.currency), "reason": refund.reason},
        )
    return refund


@transaction.atomic
def refund_fail(*, refund_id: str, message: str) -> Refund:
    """The gateway stayed unavailable: give the reserved amount back to the payment."""
    refund = Refund.objects.select_for_update().get(refund_id=refund_id)
    if refund.status == RefundStatus.REQUESTED:
        payment = Payment.objects.select_for_update().get(pk=refund.payment_id)
        payment.refunded_amount -= refund.amount
        payment.save(update_fields=["refunded_amount", "updated_at"])
        refund.status = RefundStatus.FAILED
        refund.failure_message = message
        refund.completed_at = timezone.now()
        refund.save()
        _audit(
            payment,
            action="refund.failed",
            actor=WORKER_ACTOR,
            details={"refundId": refund.refund_id, "message": message},
        )
    return refund
