"""Celery tasks of the ledger: decode the event, post it (or announce its refusal), reconcile."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task
from django.db import transaction as db_transaction

from audit.conflicts import alerting_conflicts
from bridge import task_names
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler
from core import bulk
from ledger import postings, services
from ledger.events import TransactionRequested
from ledger.postings import LedgerRefused, Posting
from payments.events import PaymentProcessed

# Lock races that outlast the service's own retries are retried by Celery, then dead-lettered.
# celery-types wants an int retry_backoff (seconds may be a float) and typed options: the
# decorators below carry an ignore for that.
CONTENTION_RETRY = {
    "autoretry_for": (services.LedgerBusy,),
    "retry_backoff": 0.5,
    "retry_backoff_max": 10,
    "max_retries": 5,
}


def _post_or_refuse(*, event: Envelope, transaction_id: str, build: Callable[[], Posting]) -> str:
    correlation_id = event.correlation_id or event.id
    actor = event.actor or services.WORKER_ACTOR  # whoever asked, when the request says
    try:
        result = services.transaction_post(
            posting=build(), actor=actor, correlation_id=correlation_id, event=event
        )
    except LedgerRefused as refused:
        services.transaction_refuse(
            transaction_id=transaction_id,
            refused=refused,
            actor=actor,
            correlation_id=correlation_id,
            event=event,
        )
        return refused.reason
    return "posted" if result.created else "duplicate"


# What an event asks the ledger to post: (transactionId, build the posting), or None to ignore it.
PostingOf = Callable[[Envelope], tuple[str, Callable[[], Posting]] | None]


def _requested_posting(event: Envelope) -> tuple[str, Callable[[], Posting]]:
    request = TransactionRequested.model_validate(event.data)
    return request.transactionId, lambda: postings.from_request(request)


def _payment_posting(event: Envelope) -> tuple[str, Callable[[], Posting]] | None:
    payment = PaymentProcessed.model_validate(event.data)
    if not postings.is_capture(payment):
        return None
    return postings.payment_transaction_id(payment.paymentId), lambda: postings.from_payment(payment)


def _post_one(payload: dict[str, Any], posting_of: PostingOf) -> str:
    event = Envelope.from_task_payload(payload)
    wanted = posting_of(event)
    if wanted is None:
        return "ignored"
    transaction_id, build = wanted
    with alerting_conflicts(event):
        return _post_or_refuse(event=event, transaction_id=transaction_id, build=build)


def _post_batch(events: list[Envelope], posting_of: PostingOf) -> list[str]:
    """A batch the bridge packed, posted in one database transaction with set-based writes
    (`services.transactions_post_batch`). Any error fails the batch, whose events then run one at
    a time."""
    requests = [
        services.PostRequest(
            event=event,
            transaction_id=transaction_id,
            build=build,
            actor=event.actor or services.WORKER_ACTOR,
            correlation_id=event.correlation_id or event.id,
        )
        for event in events
        if (wanted := posting_of(event)) is not None
        for transaction_id, build in [wanted]
    ]
    # Outbox rows are the last writes of a posting or refusal, so none is collected inside a
    # savepoint that then rolls back (the condition core.bulk sets).
    with db_transaction.atomic(), bulk.deferred_writes():
        return services.transactions_post_batch(requests)


@shared_task(name=task_names.POST_TRANSACTION_REQUESTED, base=EventTask, **CONTENTION_RETRY)  # type: ignore[call-overload]  # see CONTENTION_RETRY
def post_transaction_requested(payload: dict[str, Any]) -> str:
    return _post_one(payload, _requested_posting)


@shared_task(name=task_names.POST_CAPTURED_PAYMENT, base=EventTask, **CONTENTION_RETRY)  # type: ignore[call-overload]  # see CONTENTION_RETRY
def post_captured_payment(payload: dict[str, Any]) -> str:
    return _post_one(payload, _payment_posting)


@batch_handler(task_names.POST_TRANSACTION_REQUESTED)
def post_transactions_requested(events: list[Envelope]) -> list[str]:
    return _post_batch(events, _requested_posting)


@batch_handler(task_names.POST_CAPTURED_PAYMENT)
def post_captured_payments(events: list[Envelope]) -> list[str]:
    return _post_batch(events, _payment_posting)


@shared_task(name="ledger.reconcile_balances")
def reconcile_balances() -> bool:
    return services.balances_reconcile().ok
