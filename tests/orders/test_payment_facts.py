"""Orders act only on the payment they requested: its reserved id AND the order's total, currency,
user and merchant. A cent paid under the order's id does not pay a 1,000.00 order."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, transaction

from audit.models import ComplianceAlert
from bridge import topics
from bridge.codec import Envelope, now_rfc3339
from bridge.routing import validate
from orders import services
from orders.events import order_payment_request
from orders.models import Order, OrderStatus, order_payment_id
from payments import services as payment_services
from payments.events import PaymentRequested
from payments.models import Payment, PaymentStatus
from tests.conftest import Stack
from tests.orders.support import make_product, order_request, place, stock, wait_status
from tests.support.users import make_api_user
from tests.support.waiting import wait_until


def _mismatch_alerts(order_id: str) -> list[ComplianceAlert]:
    return list(ComplianceAlert.objects.filter(rule="reconciliation_mismatch", subject=f"order:{order_id}"))


def claim_order_payment_id_first(
    data: dict[str, Any], client: Any, held: threading.Event, release: threading.Event
) -> None:
    """A client's own payment of one cent under the order's reserved paymentId (derivable from the
    orderId), requested the way the API requests one and committed only on `release`: until then
    the platform's own request for that id waits on the unique index, so the order is reserved and
    the cent is the payment that answers for the id."""
    try:
        with transaction.atomic():
            payment_services.payment_request_create(
                client=client,
                request=PaymentRequested.model_validate(
                    {
                        "paymentId": order_payment_id(data["orderId"]),
                        "userId": data["userId"],
                        "amount": "0.01",
                        "currency": "USD",
                        "paymentMethod": {"type": "card", "token": "tok_visa"},
                        "merchantId": f"mallory_{uuid.uuid4().hex[:6]}",
                        "metadata": {"orderId": data["orderId"]},
                    }
                ),
                correlation_id=str(uuid.uuid4()),
            )
            held.set()
            release.wait(timeout=120)
    finally:
        connection.close()


def test_a_cent_paid_under_the_orders_payment_id_leaves_the_order_reserved_and_raises_an_alert(
    live: Stack,
) -> None:
    product = make_product(available=3, price="1000.00")
    data = order_request(product, quantity=1)
    client = make_api_user("mallory")
    held, release = threading.Event(), threading.Event()
    claimer = threading.Thread(target=claim_order_payment_id_first, args=(data, client, held, release))
    claimer.start()
    try:
        assert held.wait(10)
        place(live, data)
        order = wait_status(data["orderId"], OrderStatus.RESERVED)
        assert stock(product) == (3, 1)
    finally:
        release.set()
        claimer.join()

    # The cent is captured by the real payments worker and announced on payments.payment-processed
    # with metadata.orderId, as the platform announces any capture.
    payment = wait_until(
        lambda: Payment.objects.filter(payment_id=order.payment_id, status=PaymentStatus.CAPTURED).first(),
        what="the cent captured",
    )
    assert payment.amount == Decimal("0.01")
    # The positive sign that orders read it: its alert about a payment that is not the order's.
    [alert] = wait_until(lambda: _mismatch_alerts(data["orderId"]), what="orders' mismatch alert")
    assert alert.details["check"] == "order_payment"
    assert alert.details["differences"]["amount"] == {"expected": "1000.00", "received": "0.01"}
    assert "merchantId" in alert.details["differences"]

    order = Order.objects.get(pk=order.pk)
    assert order.status == OrderStatus.RESERVED
    assert [t.to_status for t in order.transitions.all()] == ["pending", "reserved"]
    assert "payment_captured" not in {s.step for s in order.saga_steps.all()}
    assert stock(product) == (3, 1), "nothing committed, nothing shipped"
    assert not order.tracking_number


# --- the same rule, service tier (real PostgreSQL, the bridge's own validation) -------------------


def _reserved_order(**overrides: Any) -> Order:
    product = make_product(available=5, price="1000.00")
    data = order_request(product, quantity=1, **overrides)
    event = Envelope(
        id=str(uuid.uuid4()), type=topics.ORDER_REQUESTED.name, source="/tests", time=now_rfc3339(), data=data
    )
    order = services.orders_place(events=[event])[0]
    assert order is not None and order.status == OrderStatus.RESERVED
    return order


def _payment_event(order: Order, *, captured: bool = True, **changes: Any) -> Envelope:
    """payments' answer for the order's payment as the bridge hands it to orders, with `changes`."""
    data = {**order_payment_request(order).model_dump(mode="json", exclude_none=True), **changes}
    if captured:
        data.update(status="captured", processedAt=now_rfc3339())
        event_type = topics.PAYMENT_PROCESSED.name
    else:
        data.update(reason="card_declined", message="declined")
        event_type = topics.PAYMENT_FAILED.name
    envelope, _ = validate(
        Envelope(
            id=str(uuid.uuid4()),
            type=event_type,
            source="/kafka-platform/payments",
            time=now_rfc3339(),
            data=data,
            signed=True,  # payments' own event, as the bridge hands it on after verifying it
        )
    )
    return envelope


@pytest.mark.django_db
def test_a_capture_in_another_currency_does_not_pay_the_order() -> None:
    order = _reserved_order()
    assert services.orders_settle_payments(events=[_payment_event(order, currency="EUR")]) == []

    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED
    [alert] = _mismatch_alerts(order.order_id)
    assert alert.details["differences"] == {"currency": {"expected": "USD", "received": "EUR"}}


@pytest.mark.django_db
def test_a_failure_of_another_amount_does_not_cancel_the_order() -> None:
    order = _reserved_order()
    services.orders_settle_payments(events=[_payment_event(order, captured=False, amount="1.00")])

    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED
    assert order.reservations.get().status == "held"


@pytest.mark.django_db
def test_another_payment_naming_the_order_is_an_ordinary_payment() -> None:
    order = _reserved_order()
    other = _payment_event(order, paymentId="pay_not_the_orders")
    assert services.orders_settle_payments(events=[other]) == []

    order.refresh_from_db()
    assert order.status == OrderStatus.RESERVED
    assert not _mismatch_alerts(order.order_id)


@pytest.mark.django_db
def test_the_orders_own_payment_confirms_it() -> None:
    order = _reserved_order()
    services.orders_settle_payments(events=[_payment_event(order)])

    order.refresh_from_db()
    assert order.status == OrderStatus.CONFIRMED


@pytest.mark.django_db
def test_a_late_capture_of_another_amount_is_not_refunded_by_orders() -> None:
    order = _reserved_order()
    with transaction.atomic():
        Order.objects.filter(pk=order.pk).update(reservation_expires_at=order.created_at)
    assert services.orders_expire_reservations() >= 1
    order.refresh_from_db()
    assert order.status == OrderStatus.CANCELLED

    services.orders_settle_payments(events=[_payment_event(order, amount="0.01")])
    assert not order.saga_steps.filter(step="late_capture_refunded").exists()
