"""Ids over Kafka with a real bridge and worker: an outside record may not carry one of the
platform's ids (reserved_id), and an id seen before arriving with other content is dead-lettered
(conflicting_duplicate) with a compliance alert, never dropped as a duplicate and never failed."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.utils import timezone

from audit.models import ComplianceAlert
from bridge import topics
from bridge.models import InboxEvent
from ledger import postings
from ledger import services as ledger_services
from ledger.models import Transaction
from payments.models import Payment
from tests.conftest import Stack
from tests.ledger.support import balance, post, topup_request, transfer_request
from tests.support.builders import payment_request, structured
from tests.support.drained import wait_until_published
from tests.support.kafka import Collector, produce, subject_is
from tests.support.signing import sign
from tests.support.waiting import wait_until

LEDGER_REQUESTED = topics.LEDGER_TRANSACTION_REQUESTED.name
PAYMENT_REQUESTED = topics.PAYMENT_REQUESTED.name
RULE = "conflicting_duplicate"


def test_unsigned_records_with_platform_ids_go_to_the_dlq_as_reserved_id(
    live: Stack, collector: Collector
) -> None:
    squat = transfer_request(
        "user:mallory", "merchant:m-x", "0.01", transactionId=f"refund:{uuid.uuid4().hex}"
    )
    produce(live.bootstrap, LEDGER_REQUESTED, structured(LEDGER_REQUESTED, squat), key=squat["transactionId"])
    order_payment = payment_request(paymentId="ordpay_" + uuid.uuid4().hex, amount="0.01")
    produce(
        live.bootstrap,
        PAYMENT_REQUESTED,
        structured(PAYMENT_REQUESTED, order_payment),
        key=order_payment["paymentId"],
    )
    # An ordinary record behind them goes through: the refusals stop nothing else.
    good = payment_request()
    produce(live.bootstrap, PAYMENT_REQUESTED, structured(PAYMENT_REQUESTED, good), key=good["paymentId"])

    # An unsigned record on the gated ledger topic is refused before its id is looked at; a
    # trusted integration claiming a platform id is refused as reserved_id
    # (tests/bridge/test_who_may_produce.py::test_trusted_and_rotated).
    [ledger_dead] = collector.wait_for(topics.LEDGER_DLQ.name, subject_is(squat["transactionId"]))
    assert ledger_dead.headers["dlq-reason"] == b"unauthenticated"
    [payment_dead] = collector.wait_for(topics.PAYMENTS_DLQ.name, subject_is(order_payment["paymentId"]))
    assert payment_dead.headers["dlq-reason"] == b"reserved_id"
    collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(good["paymentId"]))
    assert not Transaction.objects.filter(pk=squat["transactionId"]).exists()
    assert not Payment.objects.filter(payment_id=order_payment["paymentId"]).exists()


def test_a_refund_posting_behind_a_squatted_id_is_dead_lettered_and_alerted_not_dropped(
    live: Stack, collector: Collector
) -> None:
    """The squat the API now refuses, had it happened (say, before this check): a 0.01 transfer
    under `refund:R` is posted first, then the platform's own 50.00 refund posting for R arrives.
    It is not taken for a duplicate: dead-lettered `conflicting_duplicate`, an alert raised, and no
    ledger.transaction-failed (payments would start compensating on one)."""
    since = timezone.now()
    merchant = f"merchant:m_{uuid.uuid4().hex[:8]}"
    post(topup_request(merchant, "80.00"))
    refund_id = uuid.uuid4().hex
    transaction_id = f"refund:{refund_id}"
    post(transfer_request(merchant, "user:mallory", "0.01", transactionId=transaction_id))

    refund = postings.refund_posting(
        payment_id=f"pay_{uuid.uuid4().hex[:12]}",
        refund_id=refund_id,
        merchant_id=merchant.removeprefix("merchant:"),
        amount=Decimal("50.00"),
        currency="USD",
    )
    ledger_services.transaction_request(request=refund)  # the platform's outbox: a signed record

    [dead] = collector.wait_for(topics.LEDGER_DLQ.name, subject_is(transaction_id))
    assert dead.headers["dlq-reason"] == b"conflicting_duplicate"
    alert = wait_until(
        lambda: ComplianceAlert.objects.filter(rule=RULE, subject=f"transaction:{transaction_id}").first(),
        what="the conflicting duplicate's alert",
    )
    assert alert is not None
    assert "entries" in alert.details["differences"] and "kind" in alert.details["differences"]
    # The task's edge wrote any failed event to the outbox before it dead-lettered the record (the
    # proof above that the record was consumed): once the outbox is published, it would be here.
    wait_until_published(collector, since=since)
    assert not collector.matching(topics.LEDGER_TRANSACTION_FAILED.name, subject_is(transaction_id))
    assert balance(merchant) == Decimal("79.99")  # neither posted twice nor taken for the refund


def test_the_same_posting_twice_is_one_posting_and_no_alert(live: Stack, collector: Collector) -> None:
    account = f"user:dup-{uuid.uuid4().hex[:8]}"
    data = topup_request(account, "7.00")
    event_ids = [str(uuid.uuid4()), str(uuid.uuid4())]  # two events asking for the same thing
    for event_id in event_ids:
        value = structured(LEDGER_REQUESTED, data, event_id=event_id)
        produce(
            live.bootstrap,
            LEDGER_REQUESTED,
            value,
            key=data["transactionId"],
            headers=sign(LEDGER_REQUESTED, value),  # as the platform (an operator's API request)
        )
    # Both were handled (the ledger's inbox holds each) before "nothing else happened" counts.
    wait_until(
        lambda: InboxEvent.objects.filter(consumer="ledger", event_id__in=event_ids).count() == 2,
        what="both requests handled",
    )
    assert balance(account) == Decimal("7.00")
    assert not collector.matching(topics.LEDGER_DLQ.name, subject_is(data["transactionId"]))
    assert not ComplianceAlert.objects.filter(
        rule=RULE, subject=f"transaction:{data['transactionId']}"
    ).exists()
