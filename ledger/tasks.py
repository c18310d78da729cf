"""Celery tasks of the ledger: decode the event, post it (or announce its refusal), reconcile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

from bridge.codec import Envelope
from bridge.tasks import EventTask
from ledger import postings, services
from ledger.events import TransactionRequested
from ledger.postings import LedgerRefused, Posting
from payments.events import PaymentProcessed

CAPTURED = "captured"
# Lock races that outlast the service's own retries are retried by Celery, then dead-lettered.
CONTENTION_RETRY = {
    "autoretry_for": (services.LedgerBusy,),
    "retry_backoff": 0.5,
    "retry_backoff_max": 10,
    "max_retries": 5,
}


def _post_or_refuse(*, event: Envelope, transaction_id: str, build: Callable[[], Posting]) -> str:
    correlation_id = event.correlation_id or event.id
    try:
        result = services.transaction_post(
            posting=build(), actor=services.WORKER_ACTOR, correlation_id=correlation_id, event=event
        )
    except LedgerRefused as refused:
        services.transaction_refuse(
            transaction_id=transaction_id,
            refused=refused,
            actor=services.WORKER_ACTOR,
            correlation_id=correlation_id,
            event=event,
        )
        return refused.reason
    return "posted" if result.created else "duplicate"


@shared_task(name="ledger.post_transaction_requested", base=EventTask, **CONTENTION_RETRY)
def post_transaction_requested(payload: dict[str, Any]) -> str:
    event = Envelope.from_task_payload(payload)
    request = TransactionRequested.model_validate(event.data)
    return _post_or_refuse(
        event=event, transaction_id=request.transactionId, build=lambda: postings.from_request(request)
    )


@shared_task(name="ledger.post_captured_payment", base=EventTask, **CONTENTION_RETRY)
def post_captured_payment(payload: dict[str, Any]) -> str:
    event = Envelope.from_task_payload(payload)
    payment = PaymentProcessed.model_validate(event.data)
    if payment.status != CAPTURED:
        return "ignored"
    return _post_or_refuse(
        event=event,
        transaction_id=postings.payment_transaction_id(payment.paymentId),
        build=lambda: postings.from_payment(payment),
    )


@shared_task(name="ledger.reconcile_balances")
def reconcile_balances() -> bool:
    return services.balances_reconcile().ok
