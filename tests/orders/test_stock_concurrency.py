"""The last units under many concurrent orders: never oversold, by the service's row locks and by
the database's CHECK constraint underneath them."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import IntegrityError, connection, transaction

from bridge import codec, topics
from orders import services
from orders.models import Order, OrderStatus, Product
from tests.conftest import Stack
from tests.orders.support import make_product, order_request, place, stock
from tests.support.waiting import wait_until

ORDERS = 20
UNITS = 5


def _statuses(order_ids: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Order.objects.filter(order_id__in=order_ids).values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def _settled(order_ids: list[str]) -> dict[str, int] | None:
    counts = _statuses(order_ids)
    done = counts.get(OrderStatus.CONFIRMED, 0) + counts.get(OrderStatus.REJECTED, 0)
    return counts if done == len(order_ids) else None


def test_twenty_threads_ordering_the_last_five_units_at_once_confirm_exactly_five(live: Stack) -> None:
    product = make_product(available=UNITS)
    requests = [order_request(product) for _ in range(ORDERS)]
    start = threading.Barrier(ORDERS)

    def place_now(data: dict[str, object]) -> str:
        event = codec.Envelope(
            id=str(uuid.uuid4()),
            type=topics.ORDER_REQUESTED.name,
            source="/tests",
            time=codec.now_rfc3339(),
            data=data,
        )
        try:
            start.wait()
            order = services.orders_place(events=[event])[0]
            return order.status if order else "duplicate"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=ORDERS) as pool:
        outcomes = list(pool.map(place_now, requests))

    assert sorted(outcomes).count(OrderStatus.RESERVED) == UNITS
    assert sorted(outcomes).count(OrderStatus.REJECTED) == ORDERS - UNITS
    on_hand, reserved = stock(product)
    assert (on_hand, reserved) == (UNITS, UNITS)

    ids = [data["orderId"] for data in requests]
    counts = wait_until(lambda: _settled(ids), what="every order confirmed or rejected")
    assert counts == {OrderStatus.CONFIRMED: UNITS, OrderStatus.REJECTED: ORDERS - UNITS}
    assert stock(product) == (0, 0)


def test_orders_racing_through_kafka_for_the_last_units_never_oversell(live: Stack) -> None:
    product = make_product(available=3)
    requests = [order_request(product) for _ in range(12)]
    for data in requests:
        place(live, data)

    ids = [data["orderId"] for data in requests]
    counts = wait_until(lambda: _settled(ids), timeout_s=90, what="every order confirmed or rejected")
    assert counts == {OrderStatus.CONFIRMED: 3, OrderStatus.REJECTED: 9}
    assert stock(product) == (0, 0)
    rejected = Order.objects.filter(order_id__in=ids, status=OrderStatus.REJECTED)
    assert {order.reason for order in rejected} == {"out_of_stock"}


def test_the_database_refuses_to_reserve_more_than_is_on_hand(live: Stack) -> None:
    product = make_product(available=2)
    with pytest.raises(IntegrityError, match="product_available_not_negative"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Product._meta.db_table} SET reserved = on_hand + 1 WHERE id = %s",  # noqa: S608
                [product.pk],
            )
    with pytest.raises(IntegrityError, match="product_reserved_not_negative"), transaction.atomic():
        Product.objects.filter(pk=product.pk).update(reserved=-1)
    assert stock(product) == (2, 0)
