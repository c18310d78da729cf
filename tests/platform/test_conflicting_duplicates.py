"""Each domain's intake against PostgreSQL: an id seen before with other content raises
ConflictingDuplicate (alone and in a batch) and changes nothing; the same content is a duplicate."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from bridge import topics
from bridge.codec import Envelope
from bridge.models import OutboxEvent
from core.ids import ConflictingDuplicate
from ledger import tasks as ledger_tasks
from ledger.models import Transaction
from notifications.events import NotificationRequested
from notifications.models import Notification
from notifications.services import notification_request
from orders.models import Order
from orders.services import orders_place
from payments import tasks as payments_tasks
from payments.models import Payment
from payments.services import payments_process_batch
from tests.ledger.support import balance, new_id, topup_request
from tests.orders.support import make_product, order_request
from tests.support.builders import payment_request

pytestmark = pytest.mark.django_db


def envelope(topic: topics.Topic, data: dict[str, Any]) -> Envelope:
    return Envelope(
        id=str(uuid.uuid4()), type=topic.name, source="/t", time="2026-12-04T00:00:00Z", data=data
    )


def test_ledger_single_and_batch() -> None:
    account = new_id("user:conflict")
    first = topup_request(account, "10.00")
    assert ledger_tasks.post_transactions_requested(
        [envelope(topics.LEDGER_TRANSACTION_REQUESTED, first)]
    ) == ["posted"]
    same = envelope(topics.LEDGER_TRANSACTION_REQUESTED, first)
    assert ledger_tasks.post_transactions_requested([same]) == ["duplicate"]
    other = envelope(topics.LEDGER_TRANSACTION_REQUESTED, {**first, "amount": "0.01"})
    with pytest.raises(ConflictingDuplicate) as raised:
        ledger_tasks.post_transactions_requested([other])
    assert "entries" in raised.value.differences
    with pytest.raises(ConflictingDuplicate):
        ledger_tasks.post_transaction_requested(other.to_task_payload())
    # Two requests of one batch under one new id, with different amounts: neither wins silently.
    fresh = topup_request(account, "3.00")
    pair = [
        envelope(topics.LEDGER_TRANSACTION_REQUESTED, fresh),
        envelope(topics.LEDGER_TRANSACTION_REQUESTED, {**fresh, "amount": "4.00"}),
    ]
    with pytest.raises(ConflictingDuplicate):
        ledger_tasks.post_transactions_requested(pair)
    assert not Transaction.objects.filter(pk=fresh["transactionId"]).exists()
    assert balance(account) == Decimal("10.00")
    failed = OutboxEvent.objects.filter(
        topic=topics.LEDGER_TRANSACTION_FAILED.name, key=first["transactionId"]
    )
    assert not failed.exists()


def test_a_refused_request_under_a_posted_id_is_a_conflict_not_a_silent_skip() -> None:
    account = new_id("user:conflict")
    posted = topup_request(account, "10.00")
    ledger_tasks.post_transactions_requested([envelope(topics.LEDGER_TRANSACTION_REQUESTED, posted)])
    unbalanced = {**posted, "kind": "withdrawal", "fromAccount": account, "amount": "99.00"}  # overdraft
    with pytest.raises(ConflictingDuplicate):
        ledger_tasks.post_transaction_requested(
            envelope(topics.LEDGER_TRANSACTION_REQUESTED, unbalanced).to_task_payload()
        )
    assert not OutboxEvent.objects.filter(
        topic=topics.LEDGER_TRANSACTION_FAILED.name, key=posted["transactionId"]
    ).exists()


def test_payments_alone_and_in_a_batch() -> None:
    data = payment_request(amount="10.00")
    payments_tasks.process_payment_requested(envelope(topics.PAYMENT_REQUESTED, data).to_task_payload())
    again = {**data}
    payments_process_batch(events=[envelope(topics.PAYMENT_REQUESTED, again)])
    other = {**data, "amount": "0.01"}
    with pytest.raises(ConflictingDuplicate):
        payments_tasks.process_payment_requested(envelope(topics.PAYMENT_REQUESTED, other).to_task_payload())
    with pytest.raises(ConflictingDuplicate):
        payments_process_batch(
            events=[envelope(topics.PAYMENT_REQUESTED, again), envelope(topics.PAYMENT_REQUESTED, other)]
        )
    assert Payment.objects.get(payment_id=data["paymentId"]).amount == Decimal("10.00")


def test_notifications() -> None:
    data = {
        "notificationId": f"n-{uuid.uuid4().hex[:8]}",
        "channel": "email",
        "recipient": "a@example.com",
        "body": "x",
    }
    notification_request(
        event=envelope(topics.NOTIFICATION_REQUESTED, data),
        request=NotificationRequested.model_validate(data),
    )
    assert (
        notification_request(
            event=envelope(topics.NOTIFICATION_REQUESTED, data),
            request=NotificationRequested.model_validate(data),
        )
        is None
    )
    other = {**data, "recipient": "mallory@example.com"}
    with pytest.raises(ConflictingDuplicate):
        notification_request(
            event=envelope(topics.NOTIFICATION_REQUESTED, other),
            request=NotificationRequested.model_validate(other),
        )
    assert Notification.objects.get(notification_id=data["notificationId"]).recipient == "a@example.com"


def test_orders() -> None:
    product = make_product(available=5)
    data = order_request(product)
    orders_place(events=[envelope(topics.ORDER_REQUESTED, data)])
    orders_place(events=[envelope(topics.ORDER_REQUESTED, data)])
    other = order_request(product, quantity=3, orderId=data["orderId"], userId=data["userId"])
    with pytest.raises(ConflictingDuplicate):
        orders_place(events=[envelope(topics.ORDER_REQUESTED, other)])
    assert [line.quantity for line in Order.objects.get(order_id=data["orderId"]).lines.all()] == [1]
