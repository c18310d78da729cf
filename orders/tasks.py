"""Celery tasks of the orders domain: decode the event, call the service, nothing more."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from audit.conflicts import alerting_conflicts
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler
from orders import services, task_names
from orders.events import UserRegistered


@shared_task(name=task_names.PLACE_ORDER, base=EventTask)
def place_order(payload: dict[str, Any]) -> str:
    """One order request the bridge sent alone, or a batch's request run on its own: a batch of one."""
    event = Envelope.from_task_payload(payload)
    with alerting_conflicts(event):
        orders = services.orders_place(events=[event])
    return orders[0].status if orders else "duplicate"


@batch_handler(task_names.PLACE_ORDER)
def place_orders(events: list[Envelope]) -> int:
    """A batch the bridge packed: one transaction, the products locked once (orders_place)."""
    return len(services.orders_place(events=events))


@shared_task(name=task_names.SETTLE_ORDER_PAYMENT, base=EventTask)
def settle_order_payment(payload: dict[str, Any]) -> str:
    """payments.payment-processed / -failed: the saga's next step for an order's payment (a batch of one)."""
    orders = services.orders_settle_payments(events=[Envelope.from_task_payload(payload)])
    return orders[0].status if orders else "not an order's payment"


@batch_handler(task_names.SETTLE_ORDER_PAYMENT)
def settle_order_payments(events: list[Envelope]) -> int:
    """A batch the bridge packed: one transaction, the orders and products locked once."""
    return len(services.orders_settle_payments(events=events))


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
