"""The one routing table: event type -> schema and the Celery tasks that consume it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pydantic import BaseModel, ValidationError

from audit.events import AuditRecord
from bridge import topics
from bridge.codec import Envelope, PoisonMessage
from ledger.events import TransactionRequested
from notifications.events import NotificationRequested
from orders.events import OrderRequested, UserLogin, UserRegistered
from payments.events import LedgerPostingRefused, PaymentFailed, PaymentProcessed, PaymentRequested


@dataclass(frozen=True)
class Route:
    schema: type[BaseModel]
    tasks: tuple[str, ...]


ROUTES: dict[str, Route] = {
    topics.PAYMENT_REQUESTED.name: Route(PaymentRequested, ("payments.process_payment_requested",)),
    # A captured payment is posted by the ledger and announced to the customer; an order's payment
    # also moves its order's saga on (orders ignores every other payment).
    topics.PAYMENT_PROCESSED.name: Route(
        PaymentProcessed,
        (
            "ledger.post_captured_payment",
            "notifications.notify_payment_outcome",
            "orders.settle_order_payment",
        ),
    ),
    topics.PAYMENT_FAILED.name: Route(
        PaymentFailed, ("notifications.notify_payment_outcome", "orders.settle_order_payment")
    ),
    topics.LEDGER_TRANSACTION_REQUESTED.name: Route(
        TransactionRequested, ("ledger.post_transaction_requested",)
    ),
    topics.LEDGER_TRANSACTION_FAILED.name: Route(
        LedgerPostingRefused, ("payments.compensate_refused_posting",)
    ),
    topics.NOTIFICATION_REQUESTED.name: Route(NotificationRequested, ("notifications.request_notification",)),
    topics.ORDER_REQUESTED.name: Route(OrderRequested, ("orders.place_order",)),
    # Seed 004's identity events: a welcome email, and both into the audit log (security log).
    topics.USER_REGISTERED.name: Route(UserRegistered, ("orders.welcome_user", "orders.audit_user_event")),
    topics.USER_LOGIN.name: Route(UserLogin, ("orders.audit_user_event",)),
}
AUDIT_ROUTE = Route(AuditRecord, ("audit.record_event",))


def route_for(event_type: str) -> Route | None:
    route = ROUTES.get(event_type)
    if route is None and topics.is_audit_topic(event_type):
        return AUDIT_ROUTE
    return route


def subscription_pattern() -> str:
    """The regex of topics the bridge consumes: every routed type's topic plus audit.*."""
    routed = "|".join(re.escape(name) for name in sorted(ROUTES))
    return f"^(?:{routed}|{topics.AUDIT_PATTERN})$"


def validate(envelope: Envelope) -> tuple[Envelope, Route]:
    """The envelope with `data` checked and normalised by its type's schema, and its route."""
    route = route_for(envelope.type)
    if route is None:
        raise PoisonMessage("unknown_type", f"no consumer for event type {envelope.type!r}")
    try:
        model = route.schema.model_validate(envelope.data)
    except ValidationError as exc:
        raise PoisonMessage("schema_violation", f"{envelope.type}: {exc}") from None
    normalised = model.model_dump(exclude_unset=False, exclude_none=True)
    return replace(envelope, data=normalised), route
