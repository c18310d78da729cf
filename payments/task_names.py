"""The names of this app's Celery tasks that are sent by name; a name never changes (core/queues.py)."""

from __future__ import annotations

from typing import Final

PROCESS_PAYMENT_REQUESTED: Final = "payments.process_payment_requested"
CHARGE_PAYMENT: Final = "payments.charge_payment"
PROCESS_REFUND: Final = "payments.process_refund"
COMPENSATE_REFUSED_POSTING: Final = "payments.compensate_refused_posting"
