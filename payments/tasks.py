"""Celery tasks of the payments domain: decode the event, call the service, nothing more."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from celery import Task, shared_task
from django.conf import settings

from audit.conflicts import alerting_conflicts
from bridge.codec import Envelope
from bridge.tasks import EventTask, batch_handler
from core import metrics
from core.backoff import Jitter, backoff_delay
from core.circuit_breaker import CircuitOpen
from core.logs import safe_error
from payments import services, task_names
from payments.events import FailureReason, LedgerPostingRefused, PaymentRequested
from payments.gateway import GatewayTimeout

T = TypeVar("T")

# The outcome is unknown (timeout) or the circuit is open: ask again later with the same key.
GATEWAY_UNSURE = (GatewayTimeout, CircuitOpen)


def gateway_retry_countdown(retries: int) -> float:
    """Exponential backoff, capped, jittered between half and all of it; always far below the
    visibility timeout."""
    return backoff_delay(
        retries,
        first=settings.PAYMENTS_GATEWAY_RETRY_BACKOFF,
        cap=settings.PAYMENTS_GATEWAY_RETRY_BACKOFF_MAX,
        jitter=Jitter.EQUAL,
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How a task meets one kind of failure: retried with backoff while `max_retries` allows,
    then handed to `give_up` with a message saying how many attempts were made."""

    errors: tuple[type[BaseException], ...]
    countdown: Callable[[int], float]
    max_retries: Callable[[], int]

    def retry_or_give_up(self, task: Task, exc: BaseException, give_up: Callable[[str], T]) -> T:
        retries = task.request.retries
        if retries < self.max_retries():
            raise task.retry(exc=cast(Exception, exc), countdown=self.countdown(retries)) from exc
        return give_up(f"gateway unavailable after {retries + 1} attempts: {exc}")


# The gateway's answer is unknown (timeout) or its circuit is open: ask again later with the same
# idempotency key, up to PAYMENTS_GATEWAY_MAX_RETRIES times.
GATEWAY_RETRY = RetryPolicy(
    errors=GATEWAY_UNSURE,
    countdown=gateway_retry_countdown,
    max_retries=lambda: settings.PAYMENTS_GATEWAY_MAX_RETRIES,
)


class PaymentRequestTask(EventTask):
    def on_event_failed(self, event: Envelope, exc: BaseException) -> None:
        """A request whose processing failed for good gets its payments.payment-failed event."""
        services.payment_abandon(event=event, message=safe_error(exc))


def _process(events: list[Envelope]) -> services.BatchOutcome:
    """Payment requests, one or a batch: two transactions for all of them (payments_process_batch)."""
    started = time.perf_counter()
    outcome = services.payments_process_batch(events=events)
    elapsed = time.perf_counter() - started
    for _ in outcome.decided:
        metrics.PAYMENT_PROCESSING_DURATION.observe(elapsed)
    return outcome


@shared_task(name=task_names.PROCESS_PAYMENT_REQUESTED, bind=True, base=PaymentRequestTask, max_retries=None)
def process_payment_requested(self: Task, payload: dict[str, Any]) -> str:
    """One request the bridge sent alone, a batch's request run on its own, or a request whose
    gateway answer was unknown, asked again: a batch of one, retried with backoff while the
    gateway's answer stays unknown (then failed as gateway_unavailable)."""
    event = Envelope.from_task_payload(payload)
    with alerting_conflicts(event):
        outcome = _process([event])
    if outcome.unsure:
        [(_event, exc)] = outcome.unsure
        payment_id = PaymentRequested.model_validate(event.data).paymentId
        payment = GATEWAY_RETRY.retry_or_give_up(
            self,
            exc,
            lambda message: services.payment_give_up(
                payment_id=payment_id, reason=FailureReason.GATEWAY_UNAVAILABLE, message=message, event=event
            ),
        )
        return payment.status
    return outcome.decided[0].status if outcome.decided else "duplicate"


@batch_handler(task_names.PROCESS_PAYMENT_REQUESTED)
def process_payment_requests(events: list[Envelope]) -> int:
    """A batch the bridge packed. A request whose gateway answer is unknown goes on as its own
    task after the first backoff, and from there retries exactly as one that came alone."""
    outcome = _process(events)
    for event, _exc in outcome.unsure:
        # The batch's attempt was the first: the task goes on counting from there.
        process_payment_requested.apply_async(  # type: ignore[call-arg]  # `retries` is a Celery option
            args=(event.to_task_payload(),), countdown=gateway_retry_countdown(0), retries=1
        )
    return len(outcome.decided)


@shared_task(name=task_names.CHARGE_PAYMENT, bind=True, max_retries=None)
def charge_payment(self: Task, payment_id: str) -> str:
    """Charge a payment an operator retried after a gateway outage."""
    try:
        return services.payment_charge(payment_id=payment_id).status
    except GATEWAY_RETRY.errors as exc:
        return GATEWAY_RETRY.retry_or_give_up(
            self,
            exc,
            lambda message: (
                services.payment_give_up(
                    payment_id=payment_id, reason=FailureReason.GATEWAY_UNAVAILABLE, message=message
                ).status
            ),
        )


@shared_task(name=task_names.PROCESS_REFUND, bind=True, max_retries=None)
def process_refund(self: Task, refund_id: str) -> str:
    try:
        return services.refund_process(refund_id=refund_id).status
    except GATEWAY_RETRY.errors as exc:
        return GATEWAY_RETRY.retry_or_give_up(
            self, exc, lambda message: services.refund_fail(refund_id=refund_id, message=message).status
        )


@shared_task(name="payments.run_settlement")
def run_settlement() -> list[str]:
    return [s.settlement_id for s in services.settlement_run()]


@shared_task(name="payments.reconcile_ledger")
def reconcile_ledger() -> bool:
    """Beat's run of the comparison of payments and refunds with the ledger's postings."""
    return services.payments_reconcile().ok


@shared_task(name=task_names.COMPENSATE_REFUSED_POSTING, bind=True, base=EventTask, max_retries=None)
def compensate_refused_posting(self: Task, payload: dict[str, Any]) -> str:
    """The saga's trigger: ledger.transaction-failed for a captured payment's posting."""
    event = Envelope.from_task_payload(payload)
    refusal = LedgerPostingRefused.model_validate(event.data)
    try:
        payment = services.payment_compensate(
            event=event, transaction_id=refusal.transactionId, reason=refusal.reason, message=refusal.message
        )
    except GATEWAY_UNSURE as exc:
        raise self.retry(exc=exc, countdown=gateway_retry_countdown(min(self.request.retries, 6))) from exc
    return payment.status if payment else "not a payment posting"
