"""Settlement: captured payments settled per merchant and currency, and the net posted to the ledger."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal

from django.db import transaction

from audit.events import audit_record
from bridge import outbox, topics
from core.money import format_money
from ledger import postings
from payments.models import Payment, PaymentStatus, RefundStatus, Settlement
from payments.services.transitions import REFUNDABLE, _request_ledger_posting, _transition


@transaction.atomic
def settlement_run() -> list[Settlement]:
    """Settle every captured, unsettled payment, one Settlement per merchant and currency.

    Payments with a refund still in flight wait for the next run, so totals are final.
    """
    pending = (
        Payment.objects.select_for_update(skip_locked=True)
        .filter(status__in=REFUNDABLE, settlement__isnull=True)
        .exclude(refunds__status=RefundStatus.REQUESTED)
        .order_by("merchant_id", "currency", "id")
    )
    groups: dict[tuple[str, str], list[Payment]] = defaultdict(list)
    for payment in pending:
        groups[(payment.merchant_id, payment.currency)].append(payment)
    settlements = []
    for (merchant_id, currency), payments in groups.items():
        gross = sum((p.amount for p in payments), Decimal(0))
        refunded = sum((p.refunded_amount for p in payments), Decimal(0))
        settlement = Settlement.objects.create(
            settlement_id=f"st_{uuid.uuid4().hex[:20]}",
            merchant_id=merchant_id,
            currency=currency,
            gross_amount=gross,
            refunded_amount=refunded,
            net_amount=gross - refunded,
            payment_count=len(payments),
        )
        for payment in payments:
            payment.settlement = settlement
            _transition(
                payment,
                PaymentStatus.SETTLED,
                actor="system:settlement",
                reason=f"settlement {settlement.settlement_id}",
            )
            payment.save()
        if settlement.net_amount > 0:
            _request_ledger_posting(
                payments[0],
                postings.settlement_posting(
                    settlement_id=settlement.settlement_id,
                    merchant_id=merchant_id,
                    amount=settlement.net_amount,
                    currency=currency,
                    payment_count=len(payments),
                ),
            )
        outbox.record_event(
            topic=topics.AUDIT_PAYMENT_EVENTS,
            subject=settlement.settlement_id,
            data=audit_record(
                action="settlement.created",
                subject_type="settlement",
                subject_id=settlement.settlement_id,
                actor="system:settlement",
                details={
                    "merchantId": merchant_id,
                    "currency": currency,
                    "grossAmount": format_money(gross, currency),
                    "refundedAmount": format_money(refunded, currency),
                    "netAmount": format_money(settlement.net_amount, currency),
                    "paymentCount": len(payments),
                },
            ),
        )
        settlements.append(settlement)
    return settlements
