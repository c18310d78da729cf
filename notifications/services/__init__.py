"""Notification use cases (queue, deliver, retry, redeliver; webhook endpoints): re-exports the public API.

Each part in its module, and `from notifications import services` / `services.X` keeps working:
- `transitions`: the state changes the others share (the state machine, the claim that hands a
  notification to a worker, sent, failed, an endpoint disabled), each with its events and audit;
- `queueing`: queue a notification (requested, or for a payment's outcome), and ask for the notices
  of a payment's other occasions (refunds, reversals);
- `delivery`: one delivery attempt through the channel's provider, and the retry schedule;
- `dispatcher`: the beat task's body: hand due notifications to workers, resolve lost attempts;
- `operators`: redeliver a notification, manage webhook endpoints.

Once per notificationId: the id is unique in the table, derived notifications have deterministic
ids (`payment:<paymentId>:captured:email`), and the consuming tasks claim their event in the inbox.
"""

from __future__ import annotations

from notifications.services.delivery import notification_deliver, notifications_deliver
from notifications.services.dispatcher import DISPATCH_BATCH, DISPATCH_MAX_BATCHES, notifications_dispatch_due
from notifications.services.operators import (
    EndpointDisabled,
    InvalidEndpoint,
    NotificationInFlight,
    notification_redeliver,
    webhook_endpoint_delete,
    webhook_endpoint_register,
    webhook_endpoint_rotate_secret,
    webhook_endpoint_update,
)
from notifications.services.queueing import (
    INBOX_CONSUMER,
    PAYMENT_CAPTURED,
    PAYMENT_FAILED,
    PHONE_RE,
    CustomerNotice,
    NotificationIdTaken,
    NotificationSpec,
    ReservedNotificationId,
    customer_notify,
    customer_notify_many,
    notification_request,
    notification_submit,
    payment_outcomes_notify,
)
from notifications.services.transitions import WORKER_ACTOR, IllegalTransition

__all__ = [
    "DISPATCH_BATCH",
    "DISPATCH_MAX_BATCHES",
    "INBOX_CONSUMER",
    "PAYMENT_CAPTURED",
    "PAYMENT_FAILED",
    "PHONE_RE",
    "WORKER_ACTOR",
    "EndpointDisabled",
    "IllegalTransition",
    "InvalidEndpoint",
    "NotificationInFlight",
    "NotificationSpec",
    "NotificationIdTaken",
    "ReservedNotificationId",
    "notification_deliver",
    "notification_redeliver",
    "notification_request",
    "notification_submit",
    "notifications_deliver",
    "notifications_dispatch_due",
    "CustomerNotice",
    "customer_notify",
    "customer_notify_many",
    "payment_outcomes_notify",
    "webhook_endpoint_delete",
    "webhook_endpoint_register",
    "webhook_endpoint_rotate_secret",
    "webhook_endpoint_update",
]
