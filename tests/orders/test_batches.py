"""Order requests and their payments' answers taken as a batch (service tier): the same outcome as
one at a time, in a number of statements that does not grow with the batch."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from bridge import topics
from bridge.codec import Envelope, now_rfc3339
from bridge.models import OutboxEvent
from core.ids import ConflictingDuplicate
from orders import services
from orders.events import OrderRequested
from orders.models import Order, OrderStatus, Product
from tests.orders.support import make_product, order_request, stock
from tests.orders.test_payment_facts import _payment_event
from tests.support.users import make_api_user

pytestmark = pytest.mark.django_db(transaction=True)


def _event(data: dict[str, Any], *, event_id: str | None = None) -> Envelope:
    return Envelope(
        id=event_id or str(uuid.uuid4()),
        type=topics.ORDER_REQUESTED.name,
        source="/tests",
        time=now_rfc3339(),
        data=data,
    )


def _stock_events(product: Product) -> list[dict[str, Any]]:
    """The product's inventory.stock-updated events in the outbox, oldest first (after the set)."""
    rows = OutboxEvent.objects.filter(topic=topics.INVENTORY_STOCK_UPDATED.name, key=product.product_id)
    return [row_data for row in rows.order_by("id") if (row_data := _data(row))["reason"] != "adjusted"]


def _payment_requests(order: Order) -> int:
    """How many payments.payment-requested the order put in the outbox."""
    return OutboxEvent.objects.filter(topic=topics.PAYMENT_REQUESTED.name, key=order.payment_id).count()


def _data(row: OutboxEvent) -> dict[str, Any]:
    return dict(json.loads(bytes(row.value))["data"])


def test_a_batch_reserves_in_its_order_and_rejects_what_stock_cannot_cover() -> None:
    scarce = make_product(available=3)
    requests = [order_request(scarce, quantity=1) for _ in range(5)]
    unknown = order_request(scarce, quantity=1)
    unknown["items"] = [{"productId": "sku_not_sold_here", "quantity": 1, "price": "1.00"}]
    events = [_event(data) for data in [*requests, unknown]]

    taken = services.orders_place(events=events)

    assert [order.order_id for order in taken] == [data["orderId"] for data in [*requests, unknown]]
    statuses = dict(Order.objects.values_list("order_id", "status"))
    assert [statuses[data["orderId"]] for data in requests] == ["reserved"] * 3 + ["rejected"] * 2
    assert statuses[unknown["orderId"]] == OrderStatus.REJECTED
    assert Order.objects.get(order_id=unknown["orderId"]).reason == "unknown_product"
    assert Order.objects.get(order_id=requests[4]["orderId"]).reason == "out_of_stock"
    assert stock(scarce) == (3, 3)
    # One stock event per reservation, each saying what was left right after it.
    assert [(e["change"], e["available"], e["reserved"]) for e in _stock_events(scarce)] == [
        (-1, 2, 1),
        (-1, 1, 2),
        (-1, 0, 3),
    ]
    for data in requests[:3]:
        order = Order.objects.get(order_id=data["orderId"])
        assert [t.to_status for t in order.transitions.order_by("id")] == ["pending", "reserved"]
        assert {s.step for s in order.saga_steps.all()} == {"stock_reserved", "payment_requested"}
        assert order.reservations.get().quantity == 1
        assert order.lines.get().quantity == 1
        assert _payment_requests(order) == 1


def test_copies_in_one_batch_and_in_the_next_make_one_order() -> None:
    product = make_product(available=10)
    data = order_request(product, quantity=2)
    first = _event(data)
    again = _event(data)  # the same request under another event id (a producer's retry)

    services.orders_place(events=[first, first, again])
    services.orders_place(events=[first, _event(data)])

    order = Order.objects.get(order_id=data["orderId"])
    assert order.status == OrderStatus.RESERVED
    assert stock(product) == (10, 2)
    assert order.reservations.count() == 1 and order.lines.count() == 1
    assert _payment_requests(order) == 1


def test_an_order_the_api_created_is_reserved_by_its_request_in_a_batch() -> None:
    product = make_product(available=4)
    data = order_request(product, quantity=3)
    created = services.order_request_create(
        client=make_api_user(f"shop-{uuid.uuid4().hex[:6]}"),
        request=OrderRequested.model_validate(data),
        correlation_id="c-1",
    )
    assert created.status == OrderStatus.PENDING and stock(product) == (4, 0)
    other = order_request(product, quantity=2)

    services.orders_place(events=[_event(data), _event(other)])

    assert Order.objects.get(order_id=data["orderId"]).status == OrderStatus.RESERVED
    assert Order.objects.get(order_id=other["orderId"]).status == OrderStatus.REJECTED
    assert stock(product) == (4, 3)


def test_a_batch_with_a_conflicting_copy_changes_nothing() -> None:
    product = make_product(available=10)
    data = order_request(product, quantity=1)
    other = {**order_request(product, quantity=5), "orderId": data["orderId"], "userId": data["userId"]}
    bystander = order_request(product, quantity=1)

    with pytest.raises(ConflictingDuplicate):
        services.orders_place(events=[_event(bystander), _event(data), _event(other)])

    assert not Order.objects.filter(order_id__in=[data["orderId"], bystander["orderId"]]).exists()
    assert stock(product) == (10, 0)
    # Alone (as the batch's fallback runs them), the first two are placed; the copy is refused.
    services.orders_place(events=[_event(bystander)])
    services.orders_place(events=[_event(data)])
    with pytest.raises(ConflictingDuplicate):
        services.orders_place(events=[_event(other)])
    assert stock(product) == (10, 2)


def test_the_statements_of_a_batch_do_not_grow_with_its_orders() -> None:
    def statements(n: int) -> int:
        product = make_product(available=n)
        events = [_event(order_request(product, quantity=1)) for _ in range(n)]
        with CaptureQueriesContext(connection) as queries:
            services.orders_place(events=events)
        reserved = Order.objects.filter(status=OrderStatus.RESERVED, lines__product_id=product.product_id)
        assert reserved.count() == n
        return len(queries)

    assert statements(2) == statements(20)


# --- the payments' answers, as a batch ---------------------------------------------------------------


def test_a_batch_of_payment_answers_confirms_and_cancels_each_order_once() -> None:
    product = make_product(available=5)
    placed = services.orders_place(events=[_event(order_request(product, quantity=1)) for _ in range(4)])
    paid, declined = placed[:3], placed[3]
    captures = [_payment_event(order) for order in paid]
    answers = [*captures, _payment_event(declined, captured=False), captures[0]]

    services.orders_settle_payments(events=answers)
    services.orders_settle_payments(events=[captures[1]])  # redelivered later

    statuses = dict(Order.objects.values_list("order_id", "status"))
    assert [statuses[order.order_id] for order in paid] == ["confirmed"] * 3
    assert statuses[declined.order_id] == OrderStatus.CANCELLED
    assert stock(product) == (2, 0)
    assert [(e["reason"], e["available"]) for e in _stock_events(product)] == [
        *[("reserved", 4), ("reserved", 3), ("reserved", 2), ("reserved", 1)],
        *[("committed", 1), ("committed", 1), ("committed", 1), ("released", 2)],
    ]
    for order in paid:
        order = Order.objects.get(pk=order.pk)
        assert [t.to_status for t in order.transitions.order_by("id")] == [
            "pending",
            "reserved",
            "paid",
            "confirmed",
        ]
        assert order.tracking_number.startswith("SIM")
        assert order.reservation_expires_at is None
        assert _notices(order) == [f"order:{order.order_id}:confirmed:email"]
    assert _notices(declined) == [f"order:{declined.order_id}:cancelled:email"]


def test_the_statements_of_a_batch_of_payment_answers_do_not_grow_with_its_orders() -> None:
    def statements(n: int) -> int:
        product = make_product(available=n)
        placed = services.orders_place(events=[_event(order_request(product, quantity=1)) for _ in range(n)])
        answers = [_payment_event(order) for order in placed]
        with CaptureQueriesContext(connection) as queries:
            services.orders_settle_payments(events=answers)
        assert stock(product) == (0, 0)
        return len(queries)

    assert statements(2) == statements(20)


def _notices(order: Order) -> list[str]:
    """The notification ids the order asked for (in the outbox)."""
    rows = OutboxEvent.objects.filter(
        topic=topics.NOTIFICATION_REQUESTED.name, key__startswith=f"order:{order.order_id}:"
    )
    return sorted(row.key for row in rows)
