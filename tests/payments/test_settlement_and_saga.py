"""Settlement totals and the compensating saga, through the real worker."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.utils import timezone

from bridge import topics
from kafka_platform.celery import app as celery_app
from payments import services
from payments.models import Payment, PaymentStatus, Settlement, SimulatedCharge
from payments.services import INBOX_CONSUMER as PAYMENTS_INBOX
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.drained import wait_until_published
from tests.support.inbox import redelivery_refused
from tests.support.kafka import Collector, produce, subject_is
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
    """The ledger refuses the capture (a frozen merchant); its refusal, delivered twice, reverses
    the payment once and tells the customer on each channel once."""
    from ledger import services as ledger_services

    since = timezone.now()
    merchant = f"frozen_{uuid.uuid4().hex[:6]}"
    ledger_services.account_freeze(account_id=f"merchant:{merchant}", actor="test", reason="review")
    data = capture(
        live, collector, merchantId=merchant, customer={"email": "eve@example.com", "phone": "+15550100"}
    )
    [refused] = collector.wait_for(
        topics.LEDGER_TRANSACTION_FAILED.name, subject_is(f"payment:{data['paymentId']}")
    )
    # The ledger's own record once more, as Kafka redelivers it.
    log_offset = live.worker.log_size()
    produce(
        live.bootstrap,
        topics.LEDGER_TRANSACTION_FAILED.name,
        refused.value or b"",
        key=refused.key,
        headers=list(refused.headers.items()),
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
    # Proof that both copies were consumed before counting: the saga's inbox refused one of them
    # (whichever came second), and the notices either wrote are then published.
    wait_until(
        redelivery_refused(
            live.worker, consumer=f"{PAYMENTS_INBOX}.saga", event_id=refused.json()["id"], since=log_offset
        ),
        what="the saga refused the redelivered refusal",
    )
    wait_until_published(collector, since=since)
    assert (
        len(
            collector.matching(
                topics.NOTIFICATION_REQUESTED.name,
                lambda r: (r.json()["data"].get("context") or {}).get("paymentId") == data["paymentId"],
            )
        )
        == 2
    )


def test_a_refusal_naming_a_posted_capture_reverses_nothing(live: Stack, collector: Collector) -> None:
    """A ledger.transaction-failed for `payment:<id>` reaches the saga after the ledger posted that
    capture (a refusal of some other request under the id): the merchant holds the money, so the
    payment is not refunded or reversed, and auditors get an alert."""
    from audit.models import ComplianceAlert
    from bridge.codec import Envelope, now_rfc3339
    from ledger import selectors as ledger_selectors
    from payments import task_names

    data = capture(live, collector)
    transaction_id = f"payment:{data['paymentId']}"
    wait_until(lambda: ledger_selectors.transaction_posted(transaction_id), what="the capture posted")
    refusal = Envelope(
        id=str(uuid.uuid4()),
        type=topics.LEDGER_TRANSACTION_FAILED.name,
        source="/kafka-platform/ledger",
        time=now_rfc3339(),
        subject=transaction_id,
        data={"transactionId": transaction_id, "reason": "insufficient_funds", "message": "a transfer"},
        signed=True,
    )
    # Straight to the real worker, as the bridge hands it a refusal the ledger published.
    sent = celery_app.send_task(
        task_names.COMPENSATE_REFUSED_POSTING, args=(refusal.to_task_payload(),), queue="payments"
    )
    live.worker.wait_for_log(f"[{sent.id}] succeeded")

    payment = Payment.objects.get(payment_id=data["paymentId"])
    assert payment.status == PaymentStatus.CAPTURED and payment.refunded_amount == 0
    assert not payment.saga_steps.exists()
    assert SimulatedCharge.objects.get(idempotency_key=data["paymentId"]).refunded_amount == 0
    [alert] = ComplianceAlert.objects.filter(rule="reconciliation_mismatch", subject=transaction_id)
    assert alert.details["check"] == "refusal_of_posted_capture"


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
