"""Payments in the ledger: a captured payment credits its merchant; a frozen merchant refuses it."""

from __future__ import annotations

import uuid
from decimal import Decimal

from bridge import topics
from ledger import services
from ledger.events import TransactionRequested
from ledger.models import Transaction
from tests.conftest import Stack
from tests.ledger.support import balance, failure, transaction_request, updates
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is

PAYMENT_REQUESTED = topics.PAYMENT_REQUESTED.name


def pay(stack: Stack, merchant: str, amount: str = "99.99") -> str:
    data = payment_request(merchantId=merchant, amount=amount)
    produce(stack.bootstrap, PAYMENT_REQUESTED, structured(PAYMENT_REQUESTED, data), key=data["paymentId"])
    return data["paymentId"]


def test_captured_payment_posts_psp_to_merchant_and_a_refund_takes_it_back(
    live: Stack, collector: Collector
) -> None:
    merchant = f"m_{uuid.uuid4().hex[:8]}"
    payment_id = pay(live, merchant)
    changed = updates(collector, f"payment:{payment_id}", 2)
    assert changed[f"merchant:{merchant}"]["balance"] == "99.99"
    assert changed["external:psp"]["currency"] == "USD"
    txn = Transaction.objects.get(pk=f"payment:{payment_id}")
    assert txn.kind == "payment" and txn.metadata["paymentId"] == payment_id
    assert {(e.account_id, e.direction) for e in txn.entries.all()} == {
        ("external:psp", "debit"),
        (f"merchant:{merchant}", "credit"),
    }

    # Refunds arrive from payments as kind refund, merchant -> external:psp, through the
    # platform's outbox (a `refund:` id from outside the platform is dead-lettered).
    refund = transaction_request(
        "refund",
        transactionId=f"refund:{uuid.uuid4().hex[:8]}",
        fromAccount=f"merchant:{merchant}",
        toAccount="external:psp",
        amount="40.00",
        currency="USD",
        metadata={"paymentId": payment_id},
    )
    services.transaction_request(request=TransactionRequested.model_validate(refund))
    assert updates(collector, refund["transactionId"], 2)[f"merchant:{merchant}"]["balance"] == "59.99"
    assert balance(f"merchant:{merchant}") == Decimal("59.99")


def test_frozen_merchant_refuses_the_payment_posting_with_invalid_account(
    live: Stack, collector: Collector
) -> None:
    merchant = f"m_{uuid.uuid4().hex[:8]}"
    services.account_freeze(account_id=f"merchant:{merchant}", actor="test", reason="fraud review")
    payment_id = pay(live, merchant)

    refused = failure(collector, f"payment:{payment_id}")
    assert refused["reason"] == "invalid_account" and "frozen" in refused["message"]
    assert not Transaction.objects.filter(pk=f"payment:{payment_id}").exists()
    assert not collector.matching(topics.LEDGER_BALANCE_UPDATED.name, subject_is(f"merchant:{merchant}"))

    # Unfrozen, the next payment posts.
    services.account_unfreeze(account_id=f"merchant:{merchant}", actor="test")
    second = pay(live, merchant, amount="10.00")
    assert updates(collector, f"payment:{second}", 2)[f"merchant:{merchant}"]["balance"] == "10.00"
