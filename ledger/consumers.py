"""What the ledger consumes: transfers and top-ups requested of it, and captured payments to post."""

from __future__ import annotations

from bridge import topics
from bridge.consumers import Consumer
from ledger import task_names
from ledger.events import TransactionRequested
from payments.events import PaymentProcessed

CONSUMERS = [
    Consumer(
        topics.LEDGER_TRANSACTION_REQUESTED.name, TransactionRequested, task_names.POST_TRANSACTION_REQUESTED
    ),
    Consumer(topics.PAYMENT_PROCESSED.name, PaymentProcessed, task_names.POST_CAPTURED_PAYMENT),
]
