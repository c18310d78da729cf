"""The one routing table: event type -> schema and the Celery tasks that consume it."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from pydantic import BaseModel, ValidationError

from audit.events import AuditRecord
from bridge import task_names, topics
from bridge.codec import Envelope, PoisonMessage
from core import ids
from ledger.events import TransactionRequested
from notifications.events import NotificationRequested
from orders.events import OrderRequested, UserLogin, UserRegistered
from payments.events import LedgerPostingRefused, PaymentFailed, PaymentProcessed, PaymentRequested


@dataclass(frozen=True)
class Route:
    schema: type[BaseModel]
    tasks: tuple[str, ...]


ROUTES: dict[str, Route] = {
    topics.PAYMENT_REQUESTED.name: Route(PaymentRequested, (task_names.PROCESS_PAYMENT_REQUESTED,)),
    # A captured payment is posted by the ledger and announced to the customer; an order's payment
    # also moves its order's saga on (orders ignores every other payment).
    topics.PAYMENT_PROCESSED.name: Route(
        PaymentProcessed,
        (
            task_names.POST_CAPTURED_PAYMENT,
            task_names.NOTIFY_PAYMENT_OUTCOME,
            task_names.SETTLE_ORDER_PAYMENT,
        ),
    ),
    topics.PAYMENT_FAILED.name: Route(
        PaymentFailed, (task_names.NOTIFY_PAYMENT_OUTCOME, task_names.SETTLE_ORDER_PAYMENT)
    ),
    topics.LEDGER_TRANSACTION_REQUESTED.name: Route(
        TransactionRequested, (task_names.POST_TRANSACTION_REQUESTED,)
    ),
    topics.LEDGER_TRANSACTION_FAILED.name: Route(
        LedgerPostingRefused, (task_names.COMPENSATE_REFUSED_POSTING,)
    ),
    topics.NOTIFICATION_REQUESTED.name: Route(NotificationRequested, (task_names.REQUEST_NOTIFICATION,)),
    topics.ORDER_REQUESTED.name: Route(OrderRequested, (task_names.PLACE_ORDER,)),
    # The shop's identity events: a welcome email, and both into the audit log (security log).
    topics.USER_REGISTERED.name: Route(
        UserRegistered, (task_names.WELCOME_USER, task_names.AUDIT_USER_EVENT)
    ),
    topics.USER_LOGIN.name: Route(UserLogin, (task_names.AUDIT_USER_EVENT,)),
}
AUDIT_ROUTE = Route(AuditRecord, (task_names.RECORD_AUDIT_EVENT,))


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
    _refuse_reserved_id(envelope, normalised)
    return replace(envelope, data=normalised), route


RESERVED_ID = "reserved_id"


def _refuse_reserved_id(envelope: Envelope, data: dict) -> None:
    """A record from outside the platform may not name its object with one of the platform's
    own ids (core.ids): checked here, once for every domain, where the record's origin is known.
    The field is the topic's key field (the id of what the event creates or concerns)."""
    if envelope.signed:
        return
    topic = topics.lookup(envelope.type)
    field = topic.key_field if topic else None
    if field not in ids.OBJECT_ID_FIELDS:
        return
    value = data.get(field)
    if isinstance(value, str) and ids.is_reserved(value):
        raise PoisonMessage(
            RESERVED_ID, f"{envelope.type}: {field} {value!r} is the platform's own id (unsigned record)"
        )
