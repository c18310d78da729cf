"""What orders consumes: order requests, the outcome of each order's payment (orders ignores
every other payment), and the shop's identity events (a welcome email; both into the audit log)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge import topics
from bridge.consumers import Consumer
from core import ids
from orders import task_names
from orders.events import OrderRequested, UserLogin, UserRegistered
from payments.events import PaymentFailed, PaymentProcessed


def is_order_payment(data: Mapping[str, Any]) -> bool:
    """A payment an order asked for: its id is under orders' reserved prefix. Every other payment
    is left to the other consumers before a task exists; the service still checks the id (and
    that it is the order's), since this filter is only an optimisation."""
    payment_id = data.get("paymentId")
    return isinstance(payment_id, str) and payment_id.startswith(ids.ORDER_PAYMENT_PREFIX)


ORDER_PAYMENTS_ONLY = "order payments only"

CONSUMERS = [
    Consumer(topics.ORDER_REQUESTED.name, OrderRequested, task_names.PLACE_ORDER),
    Consumer(
        topics.PAYMENT_PROCESSED.name,
        PaymentProcessed,
        task_names.SETTLE_ORDER_PAYMENT,
        accepts=is_order_payment,
        accepts_doc=ORDER_PAYMENTS_ONLY,
    ),
    Consumer(
        topics.PAYMENT_FAILED.name,
        PaymentFailed,
        task_names.SETTLE_ORDER_PAYMENT,
        accepts=is_order_payment,
        accepts_doc=ORDER_PAYMENTS_ONLY,
    ),
    Consumer(topics.USER_REGISTERED.name, UserRegistered, task_names.WELCOME_USER),
    Consumer(topics.USER_REGISTERED.name, UserRegistered, task_names.AUDIT_USER_EVENT),
    Consumer(topics.USER_LOGIN.name, UserLogin, task_names.AUDIT_USER_EVENT),
]
