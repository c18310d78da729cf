"""Orders and inventory: products and their stock, orders with their lines, the order state
machine, its recorded transitions, the stock each order holds, and the saga's steps."""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.conf import settings
from django.db import models

from core import ids
from core.codec import EventJSONDecoder, EventJSONEncoder
from core.models import AbstractSagaStep, StatusTransition


class Product(models.Model):
    """A product of the catalog. `on_hand` is in the warehouse; `reserved` of it is held for
    orders not yet paid; the rest is `available`. The database refuses any write that would make
    reserved exceed on hand: whatever the concurrency, stock is never oversold."""

    product_id = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=255)
    price = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    on_hand = models.IntegerField(default=0)
    reserved = models.IntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product_id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(price__gte=0), name="product_price_not_negative"),
            models.CheckConstraint(condition=models.Q(reserved__gte=0), name="product_reserved_not_negative"),
            # available = on_hand - reserved >= 0: the backstop under every reservation.
            models.CheckConstraint(
                condition=models.Q(on_hand__gte=models.F("reserved")), name="product_available_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.product_id} {self.name}"

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class OrderStatus(models.TextChoices):
    PENDING = "pending"
    RESERVED = "reserved"
    PAID = "paid"
    CONFIRMED = "confirmed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# The state machine: the one place that says which status may follow which.
TRANSITIONS: dict[str, frozenset[str]] = {
    OrderStatus.PENDING: frozenset({OrderStatus.RESERVED, OrderStatus.REJECTED, OrderStatus.CANCELLED}),
    OrderStatus.RESERVED: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.CONFIRMED}),
    OrderStatus.CONFIRMED: frozenset({OrderStatus.SHIPPED, OrderStatus.CANCELLED}),
    OrderStatus.SHIPPED: frozenset({OrderStatus.DELIVERED}),
    OrderStatus.DELIVERED: frozenset(),
    OrderStatus.REJECTED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}
# A customer or an operator may cancel until the parcel leaves.
CANCELLABLE = frozenset({OrderStatus.PENDING, OrderStatus.RESERVED, OrderStatus.CONFIRMED})


class RejectReason(models.TextChoices):
    VALIDATION_ERROR = "validation_error"
    UNKNOWN_PRODUCT = "unknown_product"
    OUT_OF_STOCK = "out_of_stock"


class CancelReason:
    """Cancellations of the order's own making; a failed payment cancels with the payment's reason."""

    PAYMENT_TIMEOUT = "payment_timeout"
    BY_CUSTOMER = "cancelled_by_customer"


# The paymentIds of orders live in their own namespace: the same order always pays with the same
# id, so a redelivered order (or a resumed saga) can never request a second payment.
_PAYMENT_NAMESPACE = uuid.UUID("6f1c4f5e-7f43-4c33-9a59-0f8f6a1d0b17")
ORDER_PAYMENT_PREFIX = ids.ORDER_PAYMENT_PREFIX


def order_payment_id(order_id: str) -> str:
    return ORDER_PAYMENT_PREFIX + uuid.uuid5(_PAYMENT_NAMESPACE, order_id).hex


class Order(models.Model):
    order_id = models.CharField(max_length=64, unique=True)
    user_id = models.CharField(max_length=128, db_index=True)
    merchant_id = models.CharField(max_length=128)
    currency = models.CharField(max_length=3)
    subtotal = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))
    tax = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))
    shipping = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))
    total = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))
    status = models.CharField(max_length=16, choices=OrderStatus.choices, db_index=True)
    reason = models.CharField(max_length=64, blank=True, help_text="Why it was rejected or cancelled.")
    reason_message = models.TextField(blank=True)
    payment_id = models.CharField(max_length=64, unique=True)
    request = models.JSONField(
        encoder=EventJSONEncoder,
        decoder=EventJSONDecoder,
        help_text="The orders.order-requested data as it came (customer, paymentMethod, address).",
    )
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The API client that placed it; empty for orders that came through Kafka.",
    )
    correlation_id = models.CharField(max_length=255, blank=True)
    reservation_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A reservation still unpaid then is released (payment_timeout)."
    )
    carrier = models.CharField(max_length=64, blank=True)
    tracking_number = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            # The expiry sweep reads only orders holding stock.
            models.Index(
                fields=["reservation_expires_at"],
                name="order_reservation_due_idx",
                condition=models.Q(status="reserved"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.order_id} {self.total} {self.currency} {self.status}"


class OrderLine(models.Model):
    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="lines")
    product_id = models.CharField(max_length=64)
    quantity = models.IntegerField()
    unit_price = models.DecimalField(max_digits=20, decimal_places=4)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id}"


class ReservationStatus(models.TextChoices):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    RESTOCKED = "restocked"


class Reservation(models.Model):
    """Stock one order holds of one product: held until paid (committed), or given back."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="reservations")
    product = models.ForeignKey(Product, on_delete=models.PROTECT, related_name="reservations")
    quantity = models.PositiveIntegerField()
    status = models.CharField(
        max_length=16, choices=ReservationStatus.choices, default=ReservationStatus.HELD
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["order", "product"], name="reservation_once_per_order_product"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="reservation_quantity_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} x {self.product_id} {self.status}"


class OrderTransition(StatusTransition):
    """Who moved an order from which status to which, when and why."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="transitions")

    class Meta(StatusTransition.Meta):
        pass


class SagaStep(AbstractSagaStep):
    """One step of an order's saga. Each step happens once per order (the constraint says so): a
    redelivered event finds its step done and moves on to the next."""

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="saga_steps")

    class Meta(AbstractSagaStep.Meta):
        constraints = [models.UniqueConstraint(fields=["order", "step"], name="order_saga_step_once")]
