"""The names of this app's Celery tasks that are sent by name; a name never changes (core/queues.py)."""

from __future__ import annotations

from typing import Final

REQUEST_NOTIFICATION: Final = "notifications.request_notification"
NOTIFY_PAYMENT_OUTCOME: Final = "notifications.notify_payment_outcome"
DELIVER_NOTIFICATION: Final = "notifications.deliver_notification"
DELIVER_NOTIFICATIONS: Final = "notifications.deliver_notifications"
