"""Celery tasks of the notifications domain: decode, call the service, nothing more.

Each consumed event type has one path, its batch handler: an event the bridge sends alone is a
batch of one. A batch is one transaction, run again when it lost a race (core.races).
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import transaction

from audit.conflicts import alerting_conflicts
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler, in_one_transaction
from core.races import run_again_after_race
from notifications import services, task_names
from notifications.events import NotificationRequested
from notifications.models import Notification

# Requests only queue notifications (delivery tasks are sent after commit): a batch is one
# transaction, each request a savepoint in it.
_queue_requested = in_one_transaction(
    lambda event: services.notification_request(
        event=event, request=NotificationRequested.model_validate(event.data)
    )
)


@batch_handler(task_names.REQUEST_NOTIFICATION)
def request_notifications(events: list[Envelope]) -> list[str | None]:
    queued = run_again_after_race(
        lambda: _queue_requested(events), what=f"notification requests of {len(events)}"
    )
    return [n.status if isinstance(n, Notification) else None for n in queued]


@batch_handler(task_names.NOTIFY_PAYMENT_OUTCOME)
def notify_payment_outcomes(events: list[Envelope]) -> list[str]:
    def queue() -> list[str]:
        with transaction.atomic():
            return [n.notification_id for n in services.payment_outcomes_notify(events=events)]

    return run_again_after_race(queue, what=f"payment outcome notices of {len(events)}")


@shared_task(name=task_names.REQUEST_NOTIFICATION, base=EventTask)
def request_notification(payload: dict[str, Any]) -> str | None:
    event = Envelope.from_task_payload(payload)
    with alerting_conflicts(event):
        [status] = request_notifications([event])
    return status


@shared_task(name=task_names.NOTIFY_PAYMENT_OUTCOME, base=EventTask)
def notify_payment_outcome(payload: dict[str, Any]) -> list[str]:
    return notify_payment_outcomes([Envelope.from_task_payload(payload)])


@shared_task(name=task_names.DELIVER_NOTIFICATION)
def deliver_notification(notification_pk: int, claim: str) -> str:
    return services.notification_deliver(notification_pk=notification_pk, claim=claim)


@shared_task(name=task_names.DELIVER_NOTIFICATIONS)
def deliver_notifications(items: list[list[Any]]) -> list[str]:
    return services.notifications_deliver([(int(pk), str(claim)) for pk, claim in items])


@shared_task(name="notifications.dispatch_due")
def dispatch_due() -> int:
    return services.notifications_dispatch_due()
