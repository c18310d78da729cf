"""Settlement totals and the compensating saga, through the real worker."""

from __future__ import annotations

import uuid
from decimal import Decimal

from bridge import topics
from kafka_platform.celery import app as celery_app
from payments import services
from payments.models import Payment, PaymentStatus, Settlement, SimulatedCharge
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is
from tests.support.signing import sign
from tests.support.waiting import wait_until

REQUESTED = topics.PAYMENT_REQUESTED.name


def capture(live: Stack, collector: Collector, **overrides: object) -> dict:
    data = payment_request(**overrides)
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])
    collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(data["paymentId"]))
    return data


def test_settlement_groups_per_merchant_and_currency_captured_minus_refunded(
    live: Stack, collector: Collector
) -> None:
    merchant = f"shop_{uuid.uuid4().hex[:6]}"
    a = capture(live, collector, merchantId=merchant, amount="100.00")
    capture(live, collector, merchantId=merchant, amount="50.00")
    capture(live, collector, merchantId=merchant, amount="7.00", currency="EUR")
    refund = services.refund_request(
        payment_id=a["paymentId"], amount=Decimal("30.00"), reason="", actor="test"
    )
    wait_until(
        lambda: Payment.objects.get(payment_id=a["paymentId"]).status == PaymentStatus.PARTIALLY_REFUNDED
    )

    celery_app.send_task("payments.run_settlement", queue="payments")
    wait_until(lambda: Settlement.objects.filter(merchant_id=merchant).count() == 2)
    usd = Settlement.objects.get(merchant_id=merchant, currency="USD")
    assert (usd.gross_amount, usd.refunded_amount, usd.net_amount, usd.payment_count) == (
        Decimal("150"),
        Decimal("30"),
        Decimal("120"),
        2,
    )
    assert Settlement.objects.get(merchant_id=merchant, currency="EUR").net_amount == Decimal("7")
    assert set(Payment.objects.filter(merchant_id=merchant).values_list("status", flat=True)) == {"settled"}
    [posting] = collector.wait_for(
        topics.LEDGER_TRANSACTION_REQUESTED.name, subject_is(f"settlement:{usd.settlement_id}")
    )
    data = posting.json()["data"]
    assert (data["kind"], data["amount"], data["fromAccount"], data["toAccount"]) == (
        "withdrawal",
        "120.00",
        f"merchant:{merchant}",
        "external:bank",
    )
    assert refund.refund_id

    # The second run must be seen to finish before "nothing happened" means anything.
    second = celery_app.send_task("payments.run_settlement", queue="payments")
    live.worker.wait_for_log(f"[{second.id}] succeeded")
    assert Settlement.objects.filter(merchant_id=merchant).count() == 2, "nothing is settled twice"


def test_ledger_refusal_compensates_the_payment(live: Stack, collector: Collector) -> None:
    data = capture(live, collector, customer={"email": "eve@example.com", "phone": "+15550100"})
    refusal = {
        "transactionId": f"payment:{data['paymentId']}",
        "reason": "invalid_account",
        "message": "account merchant:platform is frozen",
    }
    event = structured(topics.LEDGER_TRANSACTION_FAILED.name, refusal)
    # As the ledger publishes it (signed), delivered twice.
    signed = sign(topics.LEDGER_TRANSACTION_FAILED.name, event)
    produce(
        live.bootstrap,
        topics.LEDGER_TRANSACTION_FAILED.name,
        event,
        key=refusal["transactionId"],
        headers=signed,
    )
    produce(
        live.bootstrap,
        topics.LEDGER_TRANSACTION_FAILED.name,
        event,
        key=refusal["transactionId"],
        headers=signed,
    )

    wait_until(lambda: Payment.objects.get(payment_id=data["paymentId"]).status == PaymentStatus.REVERSED)
    payment = Payment.objects.get(payment_id=data["paymentId"])
    assert [s.step for s in payment.saga_steps.all()] == [
        "ledger_refused",
        "gateway_refund",
        "reversed",
        "customer_notified",
    ]
    assert SimulatedCharge.objects.get(idempotency_key=data["paymentId"]).refunded_amount == payment.amount
    notices = collector.wait_for(
        topics.NOTIFICATION_REQUESTED.name,
        lambda r: (r.json()["data"].get("context") or {}).get("paymentId") == data["paymentId"],
        count=2,
    )
    assert {(n.json()["data"]["channel"], n.json()["data"]["template"]) for n in notices} == {
        ("email", "payment_reversed"),
        ("sms", "payment_reversed"),
    }
    collector.settle(2)
    assert (
        len(
            collector.matching(
                topics.NOTIFICATION_REQUESTED.name,
                lambda r: (r.json()["data"].get("context") or {}).get("paymentId") == data["paymentId"],
            )
        )
        == 2
    )


def test_frozen_merchant_saga_end_to_end(live: Stack, collector: Collector) -> None:
    """The real ledger refuses the capture of a frozen merchant; payments compensates."""
    from ledger import services as ledger_services

    merchant = f"frozen_{uuid.uuid4().hex[:6]}"
    ledger_services.account_freeze(account_id=f"merchant:{merchant}", actor="test", reason="review")
    data = capture(live, collector, merchantId=merchant)

    [refused] = collector.wait_for(
        topics.LEDGER_TRANSACTION_FAILED.name, subject_is(f"payment:{data['paymentId']}")
    )
    assert refused.json()["data"]["reason"] == "invalid_account"
    wait_until(lambda: Payment.objects.get(payment_id=data["paymentId"]).status == PaymentStatus.REVERSED)
    payment = Payment.objects.get(payment_id=data["paymentId"])
    assert [s.step for s in payment.saga_steps.all()] == [
        "ledger_refused",
        "gateway_refund",
        "reversed",
        "customer_notified",
    ]
    assert SimulatedCharge.objects.get(idempotency_key=data["paymentId"]).refunded_amount == payment.amount
    [notice] = collector.wait_for(
        topics.NOTIFICATION_REQUESTED.name,
        lambda r: (
            r.json()["data"].get("context", {}).get("paymentId") == data["paymentId"]
            and r.json()["data"].get("template") == "payment_reversed"
        ),
    )
    assert notice.json()["data"]["channel"] == "email"
