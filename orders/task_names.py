"""The names of this app's Celery tasks that are sent by name; a name never changes (core/queues.py)."""

from __future__ import annotations

from typing import Final

PLACE_ORDER: Final = "orders.place_order"
SETTLE_ORDER_PAYMENT: Final = "orders.settle_order_payment"
WELCOME_USER: Final = "orders.welcome_user"
AUDIT_USER_EVENT: Final = "orders.audit_user_event"
