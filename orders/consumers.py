"""What orders consumes: order requests, the outcome of each order's payment (orders ignores
every other payment), and the shop's identity events (a welcome email; both into the audit log)."""

from __future__ import annotations

from bridge import task_names, topics
from bridge.consumers import Consumer
from orders.events import OrderRequested, UserLogin, UserRegistered
from payments.events import PaymentFailed, PaymentProcessed

CONSUMERS = [
    Consumer(topics.ORDER_REQUESTED.name, OrderRequested, task_names.PLACE_ORDER),
    Consumer(topics.PAYMENT_PROCESSED.name, PaymentProcessed, task_names.SETTLE_ORDER_PAYMENT),
    Consumer(topics.PAYMENT_FAILED.name, PaymentFailed, task_names.SETTLE_ORDER_PAYMENT),
    Consumer(topics.USER_REGISTERED.name, UserRegistered, task_names.WELCOME_USER),
    Consumer(topics.USER_REGISTERED.name, UserRegistered, task_names.AUDIT_USER_EVENT),
    Consumer(topics.USER_LOGIN.name, UserLogin, task_names.AUDIT_USER_EVENT),
]
