"""Celery tasks of the orders domain: decode the event, call the service, nothing more."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from audit.conflicts import alerting_conflicts
from bridge.codec import Envelope
from bridge.tasks import EventTask
from orders import services, task_names
from orders.events import OrderRequested, UserRegistered


@shared_task(name=task_names.PLACE_ORDER, base=EventTask)
def place_order(payload: dict[str, Any]) -> str:
    event = Envelope.from_task_payload(payload)
    with alerting_conflicts(event):
        order = services.order_place(event=event, request=OrderRequested.model_validate(event.data))
    return order.status if order else "duplicate"


@shared_task(name=task_names.SETTLE_ORDER_PAYMENT, base=EventTask)
def settle_order_payment(payload: dict[str, Any]) -> str:
    """payments.payment-processed / -failed: the saga's next step for an order's payment."""
    order = services.order_payment_settle(event=Envelope.from_task_payload(payload))
    return order.status if order else "not an order's payment"


@shared_task(name="orders.expire_reservations")
def expire_reservations() -> int:
    return services.orders_expire_reservations()


@shared_task(name=task_names.WELCOME_USER, base=EventTask)
def welcome_user(payload: dict[str, Any]) -> bool:
    event = Envelope.from_task_payload(payload)
    return services.user_welcome(event=event, registered=UserRegistered.model_validate(event.data))


@shared_task(name=task_names.AUDIT_USER_EVENT, base=EventTask)
def audit_user_event(payload: dict[str, Any]) -> bool:
    return services.user_event_audit(event=Envelope.from_task_payload(payload))
