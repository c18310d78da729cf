"""Saga steps: both sagas' steps share one model shape, and each step is recorded once per row."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, transaction

from core.models import AbstractSagaStep
from orders.models import Order
from orders.models import SagaStep as OrderSagaStep
from payments.models import SagaStep as PaymentSagaStep
from tests.support.builders import stored_payment

pytestmark = pytest.mark.django_db


def test_both_sagas_keep_their_tables_and_columns() -> None:
    assert issubclass(PaymentSagaStep, AbstractSagaStep)
    assert issubclass(OrderSagaStep, AbstractSagaStep)
    assert PaymentSagaStep._meta.db_table == "payments_sagastep"
    assert OrderSagaStep._meta.db_table == "orders_sagastep"
    columns = {f.column for f in PaymentSagaStep._meta.concrete_fields}
    assert columns == {"id", "payment_id", "step", "status", "detail", "created_at"}
    assert {f.column for f in OrderSagaStep._meta.concrete_fields} == {
        "id",
        "order_id",
        "step",
        "detail",
        "created_at",
    }


def test_a_payment_saga_step_is_recorded_once() -> None:
    payment = stored_payment()
    PaymentSagaStep.objects.create(payment=payment, step="refund_requested", status="done")
    with pytest.raises(IntegrityError, match="saga_step_once"), transaction.atomic():
        PaymentSagaStep.objects.create(payment=payment, step="refund_requested", status="done")
    assert [str(s) for s in payment.saga_steps.all()] == ["refund_requested: done"]


def test_an_order_saga_step_is_recorded_once() -> None:
    order = Order.objects.create(
        order_id="ord_saga_1",
        user_id="u1",
        merchant_id="m1",
        currency="USD",
        status="pending",
        payment_id="pay_ord_saga_1",
        request={},
    )
    OrderSagaStep.objects.create(order=order, step="stock_released")
    with pytest.raises(IntegrityError, match="order_saga_step_once"), transaction.atomic():
        OrderSagaStep.objects.create(order=order, step="stock_released")
    assert [str(s) for s in order.saga_steps.all()] == ["stock_released"]
