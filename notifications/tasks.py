"""Celery tasks of the notifications domain: decode, call the service, nothing more."""

from __future__ import annotations

from typing import Any

from celery import shared_task
from django.db import transaction

from audit.conflicts import alerting_conflicts
from bridge import task_names
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler, in_one_transaction
from notifications import services
from notifications.events import NotificationRequested


@shared_task(name=task_names.REQUEST_NOTIFICATION, base=EventTask)
def request_notification(payload: dict[str, Any]) -> str | None:
    event = Envelope.from_task_payload(payload)
    with alerting_conflicts(event):
        notification = services.notification_request(
            event=event, request=NotificationRequested.model_validate(event.data)
        )
    return notification.status if notification else None


@shared_task(name=task_names.NOTIFY_PAYMENT_OUTCOME, base=EventTask)
def notify_payment_outcome(payload: dict[str, Any]) -> list[str]:
    event = Envelope.from_task_payload(payload)
    return [n.notification_id for n in services.payment_outcome_notify(event=event)]


@shared_task(name=task_names.DELIVER_NOTIFICATION)
def deliver_notification(notification_pk: int, claim: str) -> str:
    return services.notification_deliver(notification_pk=notification_pk, claim=claim)


@shared_task(name=task_names.DELIVER_NOTIFICATIONS)
def deliver_notifications(items: list[list[Any]]) -> list[str]:
    return services.notifications_deliver([(int(pk), str(claim)) for pk, claim in items])


@shared_task(name="notifications.dispatch_due")
def dispatch_due() -> int:
    return services.notifications_dispatch_due()


# Both only queue notifications (delivery tasks are sent after commit): a batch is one transaction.
batch_handler(task_names.REQUEST_NOTIFICATION)(
    in_one_transaction(
        lambda event: services.notification_request(
            event=event, request=NotificationRequested.model_validate(event.data)
        )
    )
)


@batch_handler(task_names.NOTIFY_PAYMENT_OUTCOME)
@transaction.atomic
def notify_payment_outcomes(events: list[Envelope]) -> list[str]:
    return [n.notification_id for n in services.payment_outcomes_notify(events=events)]
