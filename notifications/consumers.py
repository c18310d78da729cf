"""What notifications consumes: requested notices, and payment outcomes to tell the customer of."""

from __future__ import annotations

from bridge import topics
from bridge.consumers import Consumer
from notifications import task_names
from notifications.events import NotificationRequested
from payments.events import PaymentFailed, PaymentProcessed

CONSUMERS = [
    Consumer(topics.NOTIFICATION_REQUESTED.name, NotificationRequested, task_names.REQUEST_NOTIFICATION),
    Consumer(topics.PAYMENT_PROCESSED.name, PaymentProcessed, task_names.NOTIFY_PAYMENT_OUTCOME),
    Consumer(topics.PAYMENT_FAILED.name, PaymentFailed, task_names.NOTIFY_PAYMENT_OUTCOME),
]
