"""Celery tasks of the ledger: post what events ask for (or announce its refusal), reconcile.

Each consumed event type has one path, its batch handler: an event the bridge sends alone is a
batch of one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import shared_task

from audit.conflicts import alerting_conflicts
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler
from core.races import StillContended
from ledger import postings, services, task_names
from ledger.events import TransactionRequested
from ledger.postings import Posting
from payments.events import PaymentProcessed

# Lock races that outlast the service's own runs (core.races) are retried by Celery, then
# dead-lettered. celery-types wants an int retry_backoff (seconds may be a float) and typed
# options: the decorators below carry an ignore for that.
CONTENTION_RETRY = {
    "autoretry_for": (StillContended,),
    "retry_backoff": 0.5,
    "retry_backoff_max": 10,
    "max_retries": 5,
}

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


def _post(events: list[Envelope], posting_of: PostingOf) -> list[str]:
    """The events' postings, in one transaction (`services.transactions_post`): what became of
    each event, "ignored" for one that asks for none. A batch the bridge packed and a single
    event take this one path; an error fails the whole batch, whose events then run alone."""
    outcomes = ["ignored"] * len(events)
    requests: list[tuple[int, services.PostRequest]] = []
    for i, event in enumerate(events):
        wanted = posting_of(event)
        if wanted is None:
            continue
        transaction_id, build = wanted
        requests.append(
            (
                i,
                services.PostRequest(
                    transaction_id=transaction_id,
                    build=build,
                    actor=event.actor or services.WORKER_ACTOR,  # whoever asked, when the request says
                    correlation_id=event.correlation_id or event.id,
                    event=event,
                ),
            )
        )
    if requests:
        posted = services.transactions_post([request for _, request in requests])
        for (i, _), outcome in zip(requests, posted, strict=True):
            outcomes[i] = outcome
    return outcomes


def _post_alone(payload: dict[str, Any], posting_of: PostingOf) -> str:
    """One event the bridge sent alone (or a batch's event run on its own): a batch of one."""
    event = Envelope.from_task_payload(payload)
    with alerting_conflicts(event):
        [outcome] = _post([event], posting_of)
    return outcome


@shared_task(name=task_names.POST_TRANSACTION_REQUESTED, base=EventTask, **CONTENTION_RETRY)  # type: ignore[call-overload]  # see CONTENTION_RETRY
def post_transaction_requested(payload: dict[str, Any]) -> str:
    return _post_alone(payload, _requested_posting)


@shared_task(name=task_names.POST_CAPTURED_PAYMENT, base=EventTask, **CONTENTION_RETRY)  # type: ignore[call-overload]  # see CONTENTION_RETRY
def post_captured_payment(payload: dict[str, Any]) -> str:
    return _post_alone(payload, _payment_posting)


@batch_handler(task_names.POST_TRANSACTION_REQUESTED)
def post_transactions_requested(events: list[Envelope]) -> list[str]:
    return _post(events, _requested_posting)


@batch_handler(task_names.POST_CAPTURED_PAYMENT)
def post_captured_payments(events: list[Envelope]) -> list[str]:
    return _post(events, _payment_posting)


@shared_task(name="ledger.reconcile_balances")
def reconcile_balances() -> bool:
    return services.balances_reconcile().ok
