"""The names of this app's Celery tasks that are sent by name; a name never changes (core/queues.py)."""

from __future__ import annotations

from typing import Final

POST_TRANSACTION_REQUESTED: Final = "ledger.post_transaction_requested"
POST_CAPTURED_PAYMENT: Final = "ledger.post_captured_payment"
