"""Guarded status changes: the allowed moves, the refusal each domain's callers catch, the history row."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from audit.services import ALERT_STATES, IllegalAlertTransition
from core.state_machine import IllegalTransition, StateMachine
from notifications.services.transitions import NOTIFICATION_STATES
from notifications.services.transitions import IllegalTransition as NotificationIllegalTransition
from orders.services import ORDER_STATES
from orders.services import IllegalTransition as OrderIllegalTransition
from payments.models import PaymentStatus, PaymentTransition
from payments.services import IllegalTransition as PaymentIllegalTransition
from payments.services.transitions import PAYMENT_STATES
from tests.support.builders import stored_payment

DOOR = StateMachine(
    noun="door",
    moves={"open": frozenset({"closed"}), "closed": frozenset({"open", "locked"}), "locked": frozenset()},
    id_field="door_id",
)


def door(status: str) -> SimpleNamespace:
    return SimpleNamespace(door_id="d-1", status=status)


def test_an_allowed_move_changes_the_status_and_returns_the_old_one() -> None:
    row = door("closed")
    assert DOOR.move(row, "locked") == "closed"
    assert row.status == "locked"


def test_a_move_not_in_the_table_is_refused_and_leaves_the_row_as_it_was() -> None:
    row = door("locked")
    with pytest.raises(IllegalTransition, match=r"^door d-1: locked -> open is not allowed$") as caught:
        DOOR.move(row, "open")
    assert row.status == "locked"
    assert (caught.value.subject_id, caught.value.from_status, caught.value.to_status) == (
        "d-1",
        "locked",
        "open",
    )


def test_a_row_without_a_status_takes_any_first_one() -> None:
    row = door("")
    assert DOOR.move(row, "locked") == ""
    assert row.status == "locked"


def test_a_history_model_needs_its_foreign_key() -> None:
    with pytest.raises(ValueError, match="foreign key"):
        StateMachine(noun="payment", moves={}, id_field="payment_id", history=PaymentTransition)


@pytest.mark.parametrize(
    ("machine", "error", "row", "to_status", "message"),
    [
        (
            PAYMENT_STATES,
            PaymentIllegalTransition,
            SimpleNamespace(payment_id="pay_1", status="refunded"),
            "captured",
            "payment pay_1: refunded -> captured is not allowed",
        ),
        (
            ORDER_STATES,
            OrderIllegalTransition,
            SimpleNamespace(order_id="ord_1", status="shipped"),
            "cancelled",
            "order ord_1: shipped -> cancelled is not allowed",
        ),
        (
            NOTIFICATION_STATES,
            NotificationIllegalTransition,
            SimpleNamespace(notification_id="ntf_1", status="sent"),
            "sending",
            "notification ntf_1: sent -> sending is not allowed",
        ),
        (
            ALERT_STATES,
            IllegalAlertTransition,
            SimpleNamespace(alert_id="alr_1", status="resolved"),
            "acknowledged",
            "alert alr_1: resolved -> acknowledged is not allowed",
        ),
    ],
)
def test_each_domain_refuses_with_its_own_error_and_the_message_it_always_had(
    machine: StateMachine, error: type[IllegalTransition], row: SimpleNamespace, to_status: str, message: str
) -> None:
    with pytest.raises(error) as caught:
        machine.move(row, to_status)
    assert str(caught.value) == message
    assert isinstance(caught.value, IllegalTransition)


@pytest.mark.django_db
def test_a_recorded_move_writes_its_history_row() -> None:
    payment = stored_payment(status=PaymentStatus.REQUESTED)
    PAYMENT_STATES.move(payment, PaymentStatus.PROCESSING, actor="system:test", reason="why")
    rows = list(
        PaymentTransition.objects.filter(payment=payment).values_list(
            "from_status", "to_status", "actor", "reason"
        )
    )
    assert rows == [("requested", "processing", "system:test", "why")]
