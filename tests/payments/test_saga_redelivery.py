"""Two copies of one ledger refusal in the compensating saga at once: one reverses the payment, and
the other, finding it reversed meanwhile, leaves the inbox's refusal as its trace, the proof the
flow tests wait for before counting effects (tests/support/inbox.py)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from bridge import topics
from bridge.codec import Envelope, now_rfc3339
from payments.gateway import RefundResult
from payments.models import Payment, PaymentStatus
from payments.services import INBOX_CONSUMER, saga
from tests.support.builders import stored_payment
from tests.support.inbox import refusal_line

pytestmark = pytest.mark.django_db

SAGA_INBOX = f"{INBOX_CONSUMER}.saga"


class Direct:
    """The gateway's circuit, closed: the call goes through."""

    def call(self, fn: Callable[[], Any]) -> Any:
        return fn()


class OtherCopyMeanwhile:
    """The gateway as the first copy meets it: while its refund is on the way, the other copy of the
    refusal runs the whole saga, as a second worker would, and reverses the payment."""

    def __init__(self, event: Envelope) -> None:
        self.event = event
        self.refunds = 0

    def refund(self, **kwargs: Any) -> RefundResult:
        self.refunds += 1
        if self.refunds == 1:
            compensate(self.event)
        return RefundResult(reference=f"rf_{uuid.uuid4().hex[:8]}")


def compensate(event: Envelope) -> Payment | None:
    return saga.payment_compensate(
        event=event, transaction_id=event.subject or "", reason="account_frozen", message="frozen"
    )


def test_the_copy_that_finds_the_payment_reversed_meanwhile_is_refused_by_the_inbox(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    payment = stored_payment(gateway_reference="ch_saga")
    transaction_id = f"payment:{payment.payment_id}"
    event = Envelope(
        id=str(uuid.uuid4()),
        type=topics.LEDGER_TRANSACTION_FAILED.name,
        source="/kafka-platform/ledger",
        time=now_rfc3339(),
        subject=transaction_id,
        data={"transactionId": transaction_id, "reason": "account_frozen", "message": "frozen"},
    )
    gateway = OtherCopyMeanwhile(event)
    monkeypatch.setattr(saga, "get_gateway", lambda: gateway)
    monkeypatch.setattr(saga, "gateway_breaker", Direct)

    with (
        caplog.at_level(logging.INFO, logger="bridge.inbox"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        compensate(event)

    payment.refresh_from_db()
    assert payment.status == PaymentStatus.REVERSED and gateway.refunds == 2
    assert [s.step for s in payment.saga_steps.all()] == [
        "ledger_refused",
        "gateway_refund",
        "reversed",
        "customer_notified",
    ]
    refusals = [r for r in caplog.records if r.getMessage() == refusal_line(SAGA_INBOX, event.id)]
    assert len(refusals) == 1, "the copy that reversed nothing left no trace"
