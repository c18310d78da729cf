"""The orders domain's event schemas and builders: what it consumes (orders.order-requested, the
users.* events, the payment outcomes it waits for) and what it emits (docs/events.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge import topics
from core.ids import ORDER_NOTIFICATION_PREFIX, USER_NOTIFICATION_PREFIX, ObjectId
from core.money import Amount, Currency, check_field_precision, format_money
from notifications.events import NotificationRequested, notification_requested_event
from orders.models import Order, OrderStatus, Product
from payments.events import DEFAULT_MERCHANT, Customer, PaymentMethod, PaymentRequested


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="allow")

    productId: str = Field(min_length=1, max_length=64)  # noqa: N815 - the wire name
    # Any integer is understood; fewer than one is refused by the business rules (validation_error).
    quantity: int
    price: Amount


class Totals(BaseModel):
    model_config = ConfigDict(extra="allow")

    subtotal: Amount | None = None
    tax: Amount | None = None
    shipping: Amount | None = None
    total: Amount | None = None


class OrderRequested(BaseModel):
    """orders.order-requested (seeds 002 and 004); fields beyond these are kept."""

    model_config = ConfigDict(extra="allow")

    orderId: ObjectId = Field(min_length=1, max_length=64)  # noqa: N815
    userId: str = Field(min_length=1, max_length=128)  # noqa: N815
    items: list[OrderItem]
    currency: Currency
    paymentMethod: str | PaymentMethod  # noqa: N815
    merchantId: ObjectId = Field(default=DEFAULT_MERCHANT, min_length=1, max_length=128)  # noqa: N815
    customer: Customer | None = None
    shippingAddress: dict[str, Any] | None = None  # noqa: N815
    totals: Totals | None = None

    @model_validator(mode="after")
    def _money_fits_currency(self) -> OrderRequested:
        # "10.001" USD is malformed money (to orders.dlq), not a business refusal.
        for index, item in enumerate(self.items):
            item.price = check_field_precision(("items", index, "price"), item.price, self.currency)
        if self.totals is not None:
            for name in ("subtotal", "tax", "shipping", "total"):
                value = getattr(self.totals, name)
                if value is not None:
                    setattr(self.totals, name, check_field_precision(("totals", name), value, self.currency))
        return self


class OrderTotals(BaseModel):
    subtotal: Amount
    tax: Amount
    shipping: Amount
    total: Amount


class OrderCreated(OrderRequested):
    """orders.order-created: the order as requested, with its totals and status `pending`."""

    status: str


class OrderStatusUpdated(BaseModel):
    orderId: str  # noqa: N815
    oldStatus: str | None  # noqa: N815
    newStatus: str  # noqa: N815
    updatedBy: str  # noqa: N815
    reason: str | None = None


class StockUpdated(BaseModel):
    productId: str  # noqa: N815
    available: int
    reserved: int
    change: int
    reason: str


class StockReason:
    """The `reason` values of inventory.stock-updated."""

    RESERVED = "reserved"
    RELEASED = "released"
    COMMITTED = "committed"
    RESTOCKED = "restocked"
    ADJUSTED = "adjusted"


class UserRegistered(BaseModel):
    """users.user-registered: a new user of the shop (welcome email, audit record)."""

    model_config = ConfigDict(extra="allow")

    # Names the user's welcome notice (`user:<userId>:welcome:<channel>`): an id's characters only.
    userId: ObjectId = Field(min_length=1, max_length=128)  # noqa: N815
    email: str = Field(min_length=3, max_length=254)
    registrationMethod: str | None = Field(default=None, max_length=64)  # noqa: N815
    isEmailVerified: bool | None = None  # noqa: N815
    locale: str | None = Field(default=None, max_length=35)


class LoginLocation(BaseModel):
    model_config = ConfigDict(extra="allow")

    country: str | None = Field(default=None, max_length=64)
    city: str | None = Field(default=None, max_length=128)


class UserLogin(BaseModel):
    """users.user-login: carries no event id of its own."""

    model_config = ConfigDict(extra="allow")

    userId: str = Field(min_length=1, max_length=128)  # noqa: N815
    loginMethod: str | None = Field(default=None, max_length=64)  # noqa: N815
    ipAddress: str | None = Field(default=None, max_length=64)  # noqa: N815
    location: LoginLocation | None = None


# --- builders of what the domain emits ----------------------------------------------------------


def _money(amount: Decimal, currency: str) -> str:
    return format_money(amount, currency)


def order_totals(order: Order) -> OrderTotals:
    return OrderTotals.model_validate(
        {
            name: _money(getattr(order, name), order.currency)
            for name in ("subtotal", "tax", "shipping", "total")
        }
    )


def order_created_event(order: Order) -> OrderCreated:
    return OrderCreated.model_validate(
        {
            **order.request,
            "totals": order_totals(order).model_dump(),
            "status": OrderStatus.PENDING.value,
        }
    )


def order_status_updated_event(
    order: Order, *, old_status: str, actor: str, reason: str
) -> OrderStatusUpdated:
    return OrderStatusUpdated(
        orderId=order.order_id,
        oldStatus=old_status or None,
        newStatus=order.status,
        updatedBy=actor,
        reason=reason or None,
    )


def stock_updated_event(product: Product, *, change: int, reason: str) -> StockUpdated:
    return StockUpdated(
        productId=product.product_id,
        available=product.available,
        reserved=product.reserved,
        change=change,
        reason=reason,
    )


def order_payment_request(order: Order) -> PaymentRequested:
    """The payment an order asks for: its total, the order's method and customer, `metadata.orderId`."""
    request = order.request
    return PaymentRequested.model_validate(
        {
            "paymentId": order.payment_id,
            "userId": order.user_id,
            "amount": _money(order.total, order.currency),
            "currency": order.currency,
            "paymentMethod": request["paymentMethod"],
            "merchantId": order.merchant_id,
            **({"customer": request["customer"]} if request.get("customer") else {}),
            "metadata": {"orderId": order.order_id, "description": f"Order {order.order_id}"},
        }
    )


# The types this domain emits and the models of their `data` (bridge/schemas.py publishes their
# JSON Schemas; orders.order-requested and users.* are consumed and described by their routes).
EMITTED_EVENTS = {
    topics.ORDER_CREATED.name: OrderCreated,
    topics.ORDER_STATUS_UPDATED.name: OrderStatusUpdated,
    topics.INVENTORY_STOCK_UPDATED.name: StockUpdated,
}

# The topics this domain records events on (bridge.consumers.producers; docs/events.md's producers).
PRODUCES = [
    topics.PAYMENT_REQUESTED,  # an order's payment
    topics.NOTIFICATION_REQUESTED,  # the welcome email (order notices: notifications.customer_notify)
    topics.ORDER_REQUESTED,  # a client's request through the API
    topics.ORDER_CREATED,
    topics.ORDER_STATUS_UPDATED,
    topics.INVENTORY_STOCK_UPDATED,
    topics.AUDIT_ORDER_EVENTS,
    topics.AUDIT_USER_EVENTS,
]


# The welcome email's template key (seeded by orders/migrations/0003_seed_templates.py).
WELCOME_TEMPLATE = "welcome"


def order_notice_context(order: Order, context: dict[str, Any]) -> dict[str, Any]:
    """What an order's customer notice says of the order (its template's context)."""
    return {
        "orderId": order.order_id,
        "total": format_money(order.total, order.currency),
        "currency": order.currency,
        "itemCount": sum(line.quantity for line in order.lines.all()),
        **context,
    }


def order_notification_prefix(order: Order) -> str:
    """The start of every notice id of an order: `order:<orderId>:` (then occasion and channel)."""
    return f"{ORDER_NOTIFICATION_PREFIX}{order.order_id}:"


def welcome_notification_request(
    registered: UserRegistered, *, channel: str, recipient: str
) -> NotificationRequested:
    """Ask notifications for a new user's welcome on `channel`."""
    return notification_requested_event(
        notification_id=f"{USER_NOTIFICATION_PREFIX}{registered.userId}:welcome:{channel}",
        channel=channel,
        recipient=recipient,
        template_key=WELCOME_TEMPLATE,
        context={"userId": registered.userId, "email": registered.email},
        locale=registered.locale or "en",
    )
