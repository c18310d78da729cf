"""The name of every event-consuming or enqueued-by-name Celery task, spelled once.

The routing table (`bridge.routing`), the task decorators and batch handlers of each app, and code
that enqueues a task by name (`core.queues.enqueue_on_commit`) all import these, so a
renamed task cannot leave a route or an enqueue behind. Queues follow the name's domain prefix.
"""

from __future__ import annotations

from typing import Final

PROCESS_PAYMENT_REQUESTED: Final = "payments.process_payment_requested"
CHARGE_PAYMENT: Final = "payments.charge_payment"
PROCESS_REFUND: Final = "payments.process_refund"
COMPENSATE_REFUSED_POSTING: Final = "payments.compensate_refused_posting"

POST_TRANSACTION_REQUESTED: Final = "ledger.post_transaction_requested"
POST_CAPTURED_PAYMENT: Final = "ledger.post_captured_payment"

REQUEST_NOTIFICATION: Final = "notifications.request_notification"
NOTIFY_PAYMENT_OUTCOME: Final = "notifications.notify_payment_outcome"
DELIVER_NOTIFICATION: Final = "notifications.deliver_notification"
DELIVER_NOTIFICATIONS: Final = "notifications.deliver_notifications"

RECORD_AUDIT_EVENT: Final = "audit.record_event"

PLACE_ORDER: Final = "orders.place_order"
SETTLE_ORDER_PAYMENT: Final = "orders.settle_order_payment"
WELCOME_USER: Final = "orders.welcome_user"
AUDIT_USER_EVENT: Final = "orders.audit_user_event"
