"""Orders through the real bridge, workers, PostgreSQL and Kafka: the saga to confirmed, a declined
card, refusals (out of stock, unknown product, totals), redelivery, and malformed orders."""

from __future__ import annotations

from django.utils import timezone

from audit.models import AuditEvent
from audit.selectors import verify_chain
from bridge import topics
from bridge.models import InboxEvent, OutboxEvent
from notifications.models import Notification
from orders.models import Order, OrderStatus, order_payment_id
from orders.services import INBOX_CONSUMER as ORDERS_INBOX
from payments.models import Payment, PaymentStatus
from tests.conftest import Stack
from tests.orders.support import (
    REQUESTED,
    make_product,
    order_request,
    place,
    stock,
    stock_changes,
    wait_sent,
    wait_status,
)
from tests.support.drained import wait_until_published
from tests.support.inbox import redelivery_refused
from tests.support.kafka import Collector, produce, subject_is
from tests.support.waiting import wait_until


def test_order_is_reserved_paid_and_confirmed_with_stock_taken_once_and_the_email_sent(
    live: Stack, collector: Collector
) -> None:
    product = make_product(available=10, price="29.99")
    data = order_request(product, quantity=2)
    place(live, data)

    order = wait_status(data["orderId"], OrderStatus.CONFIRMED)
    assert order.total == order.subtotal and str(order.total) == "59.9800"
    assert [t.to_status for t in order.transitions.all()] == ["pending", "reserved", "paid", "confirmed"]
    steps = [s.step for s in order.saga_steps.all()]
    assert steps == [
        "stock_reserved",
        "payment_requested",
        "payment_captured",
        "stock_committed",
        "shipment_booked",
        "customer_notified_confirmed",
    ]
    assert stock(product) == (8, 0)
    [payment] = Payment.objects.filter(payment_id=order_payment_id(data["orderId"]))
    assert payment.status == PaymentStatus.CAPTURED and str(payment.amount) == "59.9800"
    assert payment.request["metadata"]["orderId"] == data["orderId"]

    mail = wait_sent(f"order:{data['orderId']}:confirmed:email")
    assert (
        mail.recipient == data["customer"]["email"] and mail.subject == f"Order {data['orderId']} confirmed"
    )
    assert "59.98 USD" in mail.body

    [created] = collector.wait_for(topics.ORDER_CREATED.name, subject_is(data["orderId"]))
    assert created.json()["data"]["status"] == "pending"
    assert created.json()["data"]["totals"] == {
        "subtotal": "59.98",
        "tax": "0.00",
        "shipping": "0.00",
        "total": "59.98",
    }
    updates = collector.wait_for(topics.ORDER_STATUS_UPDATED.name, subject_is(data["orderId"]), count=4)
    assert [u.json()["data"]["newStatus"] for u in updates] == ["pending", "reserved", "paid", "confirmed"]
    assert stock_changes(collector, product, count=2) == [("reserved", -2), ("committed", -2)]
    [last] = collector.matching(
        topics.INVENTORY_STOCK_UPDATED.name, lambda r: r.key == product.product_id.encode()
    )[-1:]
    assert last.json()["data"]["available"] == 8 and last.json()["data"]["reserved"] == 0

    # Every status change is in the audit log, and the chain still verifies.
    wait_until(
        lambda: (
            AuditEvent.objects.filter(subject_id=data["orderId"], action__startswith="order.").count() == 4
        ),
        what="four order audit records",
    )
    assert verify_chain().intact


def test_declined_card_cancels_the_order_with_the_reason_and_restores_the_stock(
    live: Stack, collector: Collector
) -> None:
    product = make_product(available=3)
    data = order_request(product, quantity=3, paymentMethod={"type": "card", "token": "tok_chargeDeclined"})
    place(live, data)

    order = wait_status(data["orderId"], OrderStatus.CANCELLED)
    assert order.reason == "card_declined"
    assert stock(product) == (3, 0)
    assert [t.to_status for t in order.transitions.all()] == ["pending", "reserved", "cancelled"]
    assert {"payment_failed", "stock_released"} <= {s.step for s in order.saga_steps.all()}
    mail = wait_sent(f"order:{data['orderId']}:cancelled:email")
    assert "card_declined" in mail.body
    assert stock_changes(collector, product, count=2) == [("reserved", -3), ("released", 3)]


def test_out_of_stock_is_rejected_and_no_payment_is_requested(live: Stack, collector: Collector) -> None:
    since = timezone.now()
    product = make_product(available=1)
    data = order_request(product, quantity=2)
    place(live, data)

    order = wait_status(data["orderId"], OrderStatus.REJECTED)
    assert order.reason == "out_of_stock" and product.product_id in order.reason_message
    assert stock(product) == (1, 0)
    [update] = collector.wait_for(
        topics.ORDER_STATUS_UPDATED.name,
        lambda r: r.key == data["orderId"].encode() and r.json()["data"]["newStatus"] == "rejected",
    )
    assert update.json()["data"]["reason"] == "out_of_stock"
    # The order's payment is asked for in the transaction that decides the order: the rejection
    # recorded is the proof the request was handled, and once the outbox is published a payment
    # request written with it would be on Kafka.
    wait_until_published(collector, since=since)
    assert not collector.matching(topics.PAYMENT_REQUESTED.name, subject_is(order.payment_id))
    assert not Payment.objects.filter(payment_id=order.payment_id).exists()
    assert not order.reservations.exists()


def test_unknown_product_and_totals_that_do_not_add_up_are_rejected(live: Stack) -> None:
    product = make_product(available=5, price="10.00")
    unknown = order_request(product)
    unknown["items"].append({"productId": "sku_does_not_exist", "quantity": 1, "price": "1.00"})
    wrong_total = order_request(
        product, quantity=2, totals={"subtotal": "20.00", "tax": "1.50", "total": "20.00"}
    )
    zero = order_request(product, quantity=0)
    for data in (unknown, wrong_total, zero):
        place(live, data)

    assert wait_status(unknown["orderId"], OrderStatus.REJECTED).reason == "unknown_product"
    refused = wait_status(wrong_total["orderId"], OrderStatus.REJECTED)
    assert refused.reason == "validation_error" and "total 20.00" in refused.reason_message
    assert wait_status(zero["orderId"], OrderStatus.REJECTED).reason == "validation_error"
    assert stock(product) == (5, 0)


def test_the_same_order_delivered_twice_is_one_order_and_one_payment(
    live: Stack, collector: Collector
) -> None:
    product = make_product(available=5)
    data = order_request(product)
    event_id, retry_id = f"evt-{data['orderId']}", f"evt-retry-{data['orderId']}"
    since = live.worker.log_size()
    place(live, data, event_id=event_id)
    place(live, data, event_id=event_id)
    # The same orderId in another event (a client's retry): still the one order.
    place(live, data, event_id=retry_id)

    wait_status(data["orderId"], OrderStatus.CONFIRMED)
    # Proof that every copy was consumed, before asserting that only one had an effect: the inbox
    # refused the redelivery (whichever copy came second), and recorded the retry as handled.
    wait_until(
        redelivery_refused(live.worker, consumer=ORDERS_INBOX, event_id=event_id, since=since),
        what=f"the worker refused the redelivered {event_id}",
    )
    wait_until(
        lambda: InboxEvent.objects.filter(consumer=ORDERS_INBOX, event_id=retry_id).exists(),
        what=f"the worker handled the retry {retry_id}",
    )
    assert Order.objects.filter(order_id=data["orderId"]).count() == 1
    payment_id = order_payment_id(data["orderId"])
    # What would be published is written with the effect, in its transaction: one payment request.
    assert OutboxEvent.objects.filter(topic=topics.PAYMENT_REQUESTED.name, key=payment_id).count() == 1
    collector.wait_for(topics.PAYMENT_REQUESTED.name, subject_is(payment_id))
    assert len(collector.matching(topics.PAYMENT_REQUESTED.name, subject_is(payment_id))) == 1
    assert Payment.objects.filter(payment_id=payment_id).count() == 1
    assert stock(product) == (4, 0)
    # The confirmation is the first order's downstream effect (through notifications): wait for it.
    notices = Notification.objects.filter(notification_id__startswith=f"order:{data['orderId']}:")
    wait_until(notices.exists, what="the order's confirmation notification")
    assert notices.count() == 1


def test_malformed_orders_go_to_the_dead_letter_topic(live: Stack, collector: Collector) -> None:
    product = make_product(available=5)
    bad_quantity = order_request(product)
    bad_quantity["items"][0]["quantity"] = "a few"
    bad_money = order_request(product)
    bad_money["items"][0]["price"] = "29.991"  # more decimals than USD has
    produce(live.bootstrap, REQUESTED, b"this is not json", key="ord-not-json")
    place(live, bad_quantity)
    place(live, bad_money)

    dlq = topics.ORDERS_DLQ.name
    [not_json] = collector.wait_for(dlq, subject_is("ord-not-json"))
    assert not_json.headers["dlq-reason"] == b"invalid_json"
    assert not_json.headers["dlq-original-topic"] == REQUESTED.encode()
    for data in (bad_quantity, bad_money):
        [record] = collector.wait_for(dlq, subject_is(data["orderId"]))
        assert record.headers["dlq-reason"] == b"schema_violation"
    assert not Order.objects.filter(order_id__in=[bad_quantity["orderId"], bad_money["orderId"]]).exists()
