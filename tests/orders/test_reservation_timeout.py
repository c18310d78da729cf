"""A reservation whose payment does not answer in time: released and the order cancelled by the
beat-driven sweep (payment_timeout); the capture that arrives late is refunded."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from orders.models import Order, OrderStatus, order_payment_id
from payments.models import Payment, PaymentStatus
from tests.conftest import Stack
from tests.orders.support import make_product, order_request, place, stock, wait_sent, wait_status
from tests.support.builders import stored_payment
from tests.support.waiting import wait_until


class _Rollback(Exception):
    pass


def hold_payment_id(payment_id: str, held: threading.Event, release: threading.Event) -> None:
    """Keep an uncommitted row with `payment_id` until `release`: the payments worker's insert of that
    id waits on the unique index, so the payment cannot answer until then. Rolled back at the end."""
    try:
        with transaction.atomic():
            stored_payment(payment_id=payment_id, status=PaymentStatus.REQUESTED)
            held.set()
            release.wait(timeout=120)
            raise _Rollback
    except _Rollback:
        pass
    finally:
        connection.close()


@pytest.mark.slow
def test_an_unanswered_reservation_is_released_and_cancelled_and_the_late_capture_refunded(
    live: Stack,
) -> None:
    product = make_product(available=2)
    data = order_request(product, quantity=2)
    held, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=hold_payment_id, args=(order_payment_id(data["orderId"]), held, release))
    holder.start()
    try:
        assert held.wait(10)
        place(live, data)
        order = wait_status(data["orderId"], OrderStatus.RESERVED)
        assert order.reservation_expires_at is not None
        assert order.reservation_expires_at > timezone.now() + timedelta(seconds=600)  # the 900 s default
        assert stock(product) == (2, 2)

        # Time passes: the reservation is due, and the beat sweep finds it.
        Order.objects.filter(pk=order.pk).update(reservation_expires_at=timezone.now() - timedelta(seconds=1))
        order = wait_status(data["orderId"], OrderStatus.CANCELLED, timeout_s=30)
        assert order.reason == "payment_timeout"
        assert stock(product) == (2, 0)
        assert {"reservation_expired", "stock_released"} <= {s.step for s in order.saga_steps.all()}
        assert wait_sent(f"order:{data['orderId']}:cancelled:email")
    finally:
        release.set()
        holder.join()

    # The payment now goes through, too late: it is captured, then refunded in full.
    payment = wait_until(
        lambda: Payment.objects.filter(payment_id=order.payment_id, status=PaymentStatus.REFUNDED).first(),
        what="the late capture refunded",
    )
    assert payment.refunded_amount == payment.amount == order.total
    assert Order.objects.get(pk=order.pk).status == OrderStatus.CANCELLED
    assert order.saga_steps.filter(step="late_capture_refunded").exists()
    assert stock(product) == (2, 0)
