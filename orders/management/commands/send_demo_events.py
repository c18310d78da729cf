"""`manage.py send_demo_events`: put sample payment requests and orders on Kafka and show what comes back."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from kafka import TopicPartition

from bridge import codec, topics
from bridge.clients import new_consumer, shared_producer
from orders.models import OrderStatus
from orders.services import product_set

DEMOS: list[tuple[str, dict[str, Any] | bytes]] = [
    (
        "a good card",
        {"amount": "42.50", "currency": "USD", "paymentMethod": {"type": "card", "token": "tok_visa"}},
    ),
    (
        "a plain method as bare JSON, amount as a JSON number",
        {"amount": 99.99, "currency": "EUR", "paymentMethod": "credit_card"},
    ),
    (
        "a declined card",
        {
            "amount": "10.00",
            "currency": "USD",
            "paymentMethod": {"type": "card", "token": "tok_chargeDeclined"},
        },
    ),
    (
        "insufficient funds",
        {
            "amount": "3000",
            "currency": "JPY",
            "paymentMethod": {"type": "card", "token": "tok_insufficientFunds"},
        },
    ),
    (
        "a malformed amount (to payments.dlq)",
        {"amount": "10.001", "currency": "USD", "paymentMethod": "credit_card"},
    ),
    ("not JSON at all (to payments.dlq)", b"this is not json"),
]
RESULT_TOPICS = [
    topics.PAYMENT_PROCESSED.name,
    topics.PAYMENT_FAILED.name,
    topics.PAYMENTS_DLQ.name,
    topics.ORDER_STATUS_UPDATED.name,
]
# Orders: a demo product with two units; one order takes both and is confirmed, the other asks for
# more than the shelf holds and is rejected (out_of_stock), whichever the bridge takes first.
DEMO_PRODUCT_NAME, DEMO_PRODUCT_PRICE, DEMO_PRODUCT_STOCK = "Demo mug", Decimal("12.50"), 2
ORDER_DEMOS = [("an order that is confirmed", 2), ("an order that runs out of stock", 3)]
# The statuses at which an order's demo is over.
ORDER_OUTCOMES = {OrderStatus.CONFIRMED, OrderStatus.REJECTED, OrderStatus.CANCELLED}


class Command(BaseCommand):
    help = (
        "Send sample payment requests and two orders of a demo product (one confirmed, one out of "
        "stock); with --wait, print their outcomes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--wait", action="store_true", help="Wait for and print the result events.")
        parser.add_argument("--timeout", type=float, default=30.0)

    def handle(self, *args: Any, **options: Any) -> None:
        consumer = self._tail_results() if options["wait"] else None
        producer = shared_producer()
        keys = {}
        for label, body in DEMOS:
            payment_id = f"demo_{uuid.uuid4().hex[:10]}"
            if isinstance(body, bytes):
                value = body
            else:
                data = {
                    "paymentId": payment_id,
                    "userId": "demo_user",
                    "merchantId": "demo_shop",
                    "customer": {"email": "demo@example.com"},
                    "metadata": {"orderId": payment_id},
                    **body,
                }
                if "token" in str(body.get("paymentMethod")):
                    event = codec.build_event(
                        event_type=topics.PAYMENT_REQUESTED.name, domain="demo", subject=payment_id, data=data
                    )
                    value = codec.dumps(event)
                else:
                    value = codec.dumps(data)
            producer.send(topics.PAYMENT_REQUESTED.name, key=payment_id.encode(), value=value).get(timeout=30)
            keys[payment_id] = label
            self.stdout.write(f"sent {payment_id}: {label}")
        keys.update(self._send_orders(producer))
        if consumer is None:
            return
        deadline = time.monotonic() + options["timeout"]
        while keys and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    payment_id = (record.key or b"").decode()
                    if payment_id in keys and self._is_outcome(record):
                        self.stdout.write(f"{record.topic:28} {payment_id}  {self._summary(record)}")
                        keys.pop(payment_id)
        for payment_id, label in keys.items():
            self.stdout.write(self.style.WARNING(f"no result yet for {payment_id} ({label})"))
        consumer.close()
        if keys:
            # A script (or the README's examples test) that waited must see that it waited in vain.
            raise CommandError(
                f"{len(keys)} of the demo's requests had no outcome within {options['timeout']:g} s;"
                " is `make run` up (bridge and worker)?"
            )

    def _send_orders(self, producer: Any) -> dict[str, str]:
        """Stock a demo product, then order more of it than there is; returns orderId -> label."""
        product, _ = product_set(
            product_id=f"demo_mug_{uuid.uuid4().hex[:6]}",
            name=DEMO_PRODUCT_NAME,
            price=DEMO_PRODUCT_PRICE,
            currency="USD",
            available=DEMO_PRODUCT_STOCK,
            actor="system:demo",
        )
        # A shopper of its own each run: the payment demos above already count towards the
        # fraud rules' velocity of demo_user.
        shopper = f"demo_shopper_{uuid.uuid4().hex[:6]}"
        sent = {}
        for label, quantity in ORDER_DEMOS:
            order_id = f"demo_order_{uuid.uuid4().hex[:10]}"
            data = {
                "orderId": order_id,
                "userId": shopper,
                "items": [{"productId": product.product_id, "quantity": quantity, "price": "12.50"}],
                "currency": "USD",
                "paymentMethod": {"type": "card", "token": "tok_visa"},
                "customer": {"email": "demo@example.com"},
            }
            producer.send(topics.ORDER_REQUESTED.name, key=order_id.encode(), value=codec.dumps(data)).get(
                timeout=30
            )
            sent[order_id] = label
            self.stdout.write(f"sent {order_id}: {label} ({quantity} of {product.product_id})")
        return sent

    def _is_outcome(self, record: Any) -> bool:
        if record.topic != topics.ORDER_STATUS_UPDATED.name:
            return True
        return codec.loads(record.value)["data"]["newStatus"] in ORDER_OUTCOMES

    def _tail_results(self) -> Any:
        consumer = new_consumer(group_id=None)
        partitions = [
            TopicPartition(t, p) for t in RESULT_TOPICS for p in consumer.partitions_for_topic(t) or []
        ]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        for tp in partitions:
            consumer.position(tp)
        return consumer

    def _summary(self, record: Any) -> str:
        headers = dict(record.headers or [])
        if "dlq-reason" in headers:
            return f"dead-lettered: {headers['dlq-reason'].decode()}"
        data = codec.loads(record.value)["data"]
        if record.topic == topics.ORDER_STATUS_UPDATED.name:
            return f"order {data['newStatus']}" + (f" ({data['reason']})" if data.get("reason") else "")
        return f"{data.get('status') or data.get('reason')} {data['amount']} {data['currency']}"
