"""Builders and waits of the order tests: catalog products, order requests, order states."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from bridge import topics
from notifications.models import Notification
from orders import services
from orders.models import Order, Product
from tests.conftest import Stack
from tests.support.builders import structured
from tests.support.kafka import Collector, produce
from tests.support.waiting import wait_until

REQUESTED = topics.ORDER_REQUESTED.name


def make_product(*, available: int, price: str = "29.99", currency: str = "USD") -> Product:
    """A new product in the catalog (set the way operators set one)."""
    product, _ = services.product_set(
        product_id=f"sku_{uuid.uuid4().hex[:10]}",
        name="A test product",
        price=Decimal(price),
        currency=currency,
        available=available,
        actor="user:test-operator",
    )
    return product


def order_request(product: Product, quantity: int = 1, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "orderId": f"ord_{uuid.uuid4().hex[:12]}",
        "userId": f"user_{uuid.uuid4().hex[:8]}",
        "items": [{"productId": product.product_id, "quantity": quantity, "price": str(product.price)}],
        "currency": product.currency,
        "paymentMethod": {"type": "card", "token": "tok_visa"},
        "customer": {"email": f"{uuid.uuid4().hex[:8]}@example.com"},
        "shippingAddress": {"line1": "1 Main St", "city": "Springfield", "country": "US"},
    }
    data.update(overrides)
    return data


def place(stack: Stack, data: dict[str, Any], *, event_id: str | None = None) -> None:
    produce(stack.bootstrap, REQUESTED, structured(REQUESTED, data, event_id=event_id), key=data["orderId"])


def wait_status(order_id: str, status: str, timeout_s: float = 60.0) -> Order:
    return wait_until(
        lambda: Order.objects.filter(order_id=order_id, status=status).first(),
        timeout_s=timeout_s,
        what=f"order {order_id} {status} (is {Order.objects.filter(order_id=order_id).first()})",
    )


def wait_sent(notification_id: str, timeout_s: float = 60.0) -> Notification:
    return wait_until(
        lambda: Notification.objects.filter(notification_id=notification_id, status="sent").first(),
        timeout_s=timeout_s,
        what=f"notification {notification_id} sent",
    )


def stock_changes(collector: Collector, product: Product, *, count: int) -> list[tuple[str, int]]:
    """(reason, change) of the product's inventory.stock-updated events after the operator set it."""
    records = collector.wait_for(
        topics.INVENTORY_STOCK_UPDATED.name,
        lambda r: r.key == product.product_id.encode() and r.json()["data"]["reason"] != "adjusted",
        count=count,
    )
    return [(r.json()["data"]["reason"], r.json()["data"]["change"]) for r in records]


def stock(product: Product) -> tuple[int, int]:
    """(on hand, reserved) as the database has them now."""
    product.refresh_from_db()
    return product.on_hand, product.reserved
