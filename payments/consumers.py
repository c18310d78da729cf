"""What payments consumes: payment requests, and the ledger's refusal of a payment's posting."""

from __future__ import annotations

from bridge import topics
from bridge.consumers import Consumer
from payments import task_names
from payments.events import LedgerPostingRefused, PaymentRequested

CONSUMERS = [
    Consumer(topics.PAYMENT_REQUESTED.name, PaymentRequested, task_names.PROCESS_PAYMENT_REQUESTED),
    # The saga's compensation: a capture the ledger refused to post is reversed.
    Consumer(
        topics.LEDGER_TRANSACTION_FAILED.name, LedgerPostingRefused, task_names.COMPENSATE_REFUSED_POSTING
    ),
]
