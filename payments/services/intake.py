"""Intake and charge: a payment request accepted once, checked, charged at the gateway and decided."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import close_old_connections, transaction

from bridge import inbox, outbox, topics
from bridge.codec import Envelope
from core import bulk
from core.actors import user_actor
from core.circuit_breaker import CircuitOpen
from core.ids import ConflictingDuplicate
from core.queues import enqueue_on_commit
from core.races import run_again_after_race
from payments import task_names
from payments.events import FailureReason, PaymentRequested
from payments.fraud import FraudHit, fraud_checks
from payments.gateway import ChargeResult, GatewayTimeout, gateway_breaker, get_gateway
from payments.models import Payment, PaymentStatus
from payments.services.transitions import (
    INBOX_CONSUMER,
    PAYMENT_STATES,
    WORKER_ACTOR,
    PaymentRefused,
    _capture,
    _check_business_rules,
    _fail,
    _transition,
)


class PaymentIdTaken(Exception):
    """The paymentId belongs to another client's payment (the API does not say so)."""


def request_conflict(payment: Payment, request: PaymentRequested) -> ConflictingDuplicate | None:
    """What makes `request` another payment than the one stored under its paymentId, or None
    when it asks for the same (then it is a duplicate, accepted once)."""
    fields = {
        "userId": (payment.user_id, request.userId),
        "merchantId": (payment.merchant_id, request.merchantId),
        "amount": (payment.amount, request.amount),
        "currency": (payment.currency, request.currency),
    }
    differences: dict[str, object] = {
        name: f"{stored} -> {new}" for name, (stored, new) in fields.items() if stored != new
    }
    if not differences:
        return None
    return ConflictingDuplicate(kind="payment", object_id=payment.payment_id, differences=differences)


def _refuse_conflict(payment: Payment, request: PaymentRequested) -> None:
    conflict = request_conflict(payment, request)
    if conflict is not None:
        raise conflict


def payment_request_create(
    *, client: Any, request: PaymentRequested, correlation_id: str
) -> tuple[Payment, bool]:
    """An API client's request: the payment exists (requested) and its event is on its way.

    Returns (payment, created). The client's own paymentId again with the same content is that
    payment (created False, nothing published again); with other content ConflictingDuplicate;
    another client's paymentId PaymentIdTaken.
    """
    existing = Payment.objects.filter(payment_id=request.paymentId).first()
    if existing is not None:
        if existing.client_id is None or existing.client_id != client.pk:
            raise PaymentIdTaken(request.paymentId)
        _refuse_conflict(existing, request)
        return existing, False
    return _payment_request_create(client=client, request=request, correlation_id=correlation_id), True


@transaction.atomic
def _payment_request_create(*, client: Any, request: PaymentRequested, correlation_id: str) -> Payment:
    data = request.model_dump(exclude_none=True)
    payment = Payment.objects.create(
        payment_id=request.paymentId,
        user_id=request.userId,
        merchant_id=request.merchantId,
        amount=request.amount,
        currency=request.currency,
        status="",
        request=data,
        client=client,
        correlation_id=correlation_id,
    )
    _transition(payment, PaymentStatus.REQUESTED, actor=user_actor(client))
    payment.save()
    outbox.record_event(
        topic=topics.PAYMENT_REQUESTED,
        subject=payment.payment_id,
        data=request,
        correlation_id=correlation_id,
    )
    return payment


def _payment_fields(event: Envelope, request: PaymentRequested) -> dict[str, Any]:
    """A new payment's fields besides its paymentId."""
    return {
        "user_id": request.userId,
        "merchant_id": request.merchantId,
        "amount": request.amount,
        "currency": request.currency,
        "status": "",
        "request": event.data,
        "correlation_id": event.correlation_id or event.id,
    }


def _accept(
    payment: Payment,
    *,
    created: bool,
    event: Envelope,
    fraud: Mapping[str, FraudHit | None] | None = None,
) -> Payment:
    """Move a request's payment, whose row the caller locked (or just created), to processing or
    failed once (`fraud`: the batch's fraud checks, made at once). A redelivered or repeated
    request leaves the payment as it is."""
    if created:
        # Who asked: the platform's signed actor, else the integration that produced the record
        # (`kafka:<topic>`, set by the bridge whatever the record claims).
        _transition(payment, PaymentStatus.REQUESTED, actor=event.actor or WORKER_ACTOR)
    elif payment.status != PaymentStatus.REQUESTED:
        if payment.is_decided:
            inbox.claim(consumer=INBOX_CONSUMER, event=event)
        return payment
    try:
        _check_business_rules(payment, fraud)
    except PaymentRefused as refused:
        _fail(payment, reason=refused.reason, message=str(refused), actor=WORKER_ACTOR)
        inbox.claim(consumer=INBOX_CONSUMER, event=event)
        return payment
    _transition(payment, PaymentStatus.PROCESSING, actor=WORKER_ACTOR)
    bulk.update(payment, ["status"])
    return payment


def payment_charge(*, payment_id: str, event: Envelope | None = None) -> Payment:
    """Charge through the gateway (behind its circuit breaker) and record the outcome.

    Raises GatewayTimeout or CircuitOpen when the outcome is unknown; the caller retries.
    """
    payment = Payment.objects.get(payment_id=payment_id)
    if payment.status != PaymentStatus.PROCESSING:
        return payment
    result = _charge_at_gateway(payment)
    with transaction.atomic():
        payment = Payment.objects.select_for_update().get(pk=payment.pk)
        return _record_charge(payment, result, event=event)


def _charge_at_gateway(payment: Payment) -> ChargeResult:
    """The gateway's answer for `payment`, keyed by its paymentId: asking again never charges twice."""
    gateway = get_gateway()
    return gateway_breaker().call(
        lambda: gateway.charge(
            idempotency_key=payment.payment_id,
            amount=payment.amount,
            currency=payment.currency,
            method=payment.request["paymentMethod"],
        )
    )


def _record_charge(payment: Payment, result: ChargeResult, *, event: Envelope | None) -> Payment:
    """The gateway's answer for `payment`, whose row the caller locked in its transaction."""
    if payment.status != PaymentStatus.PROCESSING:
        return payment  # a concurrent delivery recorded the (same) outcome first
    if result.captured:
        _capture(payment, result=result, actor=WORKER_ACTOR)
    else:
        _fail(payment, reason=result.decline_reason, message=result.message, actor=WORKER_ACTOR)
    if event is not None:
        inbox.claim(consumer=INBOX_CONSUMER, event=event)
    return payment


_gateway_pool: ThreadPoolExecutor | None = None
_gateway_pool_pid: int | None = None


def _charge_all(payments: Iterable[Payment]) -> list[ChargeResult | GatewayTimeout | CircuitOpen]:
    """Each payment's gateway answer, or the error that leaves it unknown, asking up to
    PAYMENTS_GATEWAY_CONCURRENCY at a time (a pool per worker process, made after the fork)."""
    global _gateway_pool, _gateway_pool_pid
    if _gateway_pool is None or _gateway_pool_pid != os.getpid():
        _gateway_pool = ThreadPoolExecutor(
            max_workers=max(settings.PAYMENTS_GATEWAY_CONCURRENCY, 1), thread_name_prefix="gateway"
        )
        _gateway_pool_pid = os.getpid()

    def ask(payment: Payment) -> ChargeResult | GatewayTimeout | CircuitOpen:
        # This thread's own database connection (the simulator's): one broken by an outage is
        # replaced here, as the task's own is by EventTask, or every later charge would fail.
        close_old_connections()
        try:
            return _charge_at_gateway(payment)
        except (GatewayTimeout, CircuitOpen) as exc:
            return exc

    return list(_gateway_pool.map(ask, payments))


@dataclass
class BatchOutcome:
    """What `payments_process_batch` did; `unsure` events still wait for the gateway's answer."""

    decided: list[Payment] = field(default_factory=list)
    unsure: list[tuple[Envelope, BaseException]] = field(default_factory=list)


def payments_process_batch(*, events: Sequence[Envelope]) -> BatchOutcome:
    """Payment requests, one or a batch, in two transactions however many they are: the one way a
    request is processed.

    Each request's payment is recorded once per paymentId (a redelivered or repeated request
    changes nothing), checked and moved to processing or failed; all of them in one transaction.
    Then each is charged at the gateway outside any transaction (with its paymentId as the
    idempotency key, so asking again never charges twice), and the answers recorded in a second
    transaction. A request whose answer is unknown (timeout, open circuit) is left in
    `processing` and returned in `unsure` for a retry, which takes this same path. A paymentId
    seen before with other content raises ConflictingDuplicate. A first delivery of the same
    request racing this one runs the first transaction again (core.races), which then finds it.
    """
    outcome = BatchOutcome()
    to_charge = run_again_after_race(
        lambda: _accept_all(events, outcome), what=f"payment intake of {len(events)}"
    )
    answers: list[tuple[Payment, Envelope, ChargeResult]] = []
    for (payment, event), answer in zip(to_charge, _charge_all(p for p, _ in to_charge), strict=True):
        if isinstance(answer, ChargeResult):
            answers.append((payment, event, answer))
        else:
            outcome.unsure.append((event, answer))
    if not answers:
        return outcome
    with transaction.atomic(), bulk.deferred_writes():
        locked = Payment.objects.select_for_update().in_bulk([payment.pk for payment, _, _ in answers])
        recorded = []
        for payment, event, result in answers:
            row = locked[payment.pk]
            if row.status == PaymentStatus.PROCESSING:
                recorded.append(event)  # claimed below, all at once, as _record_charge claims one
            outcome.decided.append(_record_charge(row, result, event=None))
        inbox.claim_many(consumer=INBOX_CONSUMER, events=recorded)
    return outcome


def _accept_all(events: Sequence[Envelope], outcome: BatchOutcome) -> list[tuple[Payment, Envelope]]:
    """The first transaction of `payments_process_batch`: the payments to charge, with their events
    (the decided ones are added to `outcome`)."""
    outcome.decided.clear()
    to_charge: list[tuple[Payment, Envelope]] = []
    with transaction.atomic(), bulk.deferred_writes():
        handled = inbox.seen_many(consumer=INBOX_CONSUMER, events=events)
        requests = {
            event.id: PaymentRequested.model_validate(event.data)
            for event in events
            if event.id not in handled
        }
        wanted = {request.paymentId for request in requests.values()}
        existing = {
            p.payment_id: p for p in Payment.objects.select_for_update().filter(payment_id__in=wanted)
        }
        new: dict[str, Payment] = {}
        for event in events:
            request = requests.get(event.id)
            if request is not None and request.paymentId not in existing:
                new.setdefault(
                    request.paymentId,
                    Payment(payment_id=request.paymentId, **_payment_fields(event, request)),
                )
        Payment.objects.bulk_create(new.values())
        # The fraud rules run once for the payments to accept (one velocity query, not one each).
        to_accept = [*new.values(), *(p for p in existing.values() if p.status == PaymentStatus.REQUESTED)]
        fraud = fraud_checks(to_accept)
        accepted: set[str] = set()
        for event in events:
            request = requests.get(event.id)
            if request is None:
                continue
            created = request.paymentId in new and request.paymentId not in accepted
            accepted.add(request.paymentId)
            payment = new.get(request.paymentId) or existing[request.paymentId]
            if not created:
                _refuse_conflict(payment, request)  # fails the batch; alone, it is dead-lettered
            payment = _accept(payment, created=created, event=event, fraud=fraud)
            if payment.status == PaymentStatus.PROCESSING:
                to_charge.append((payment, event))  # the gateway and _record_charge are idempotent
            elif payment.is_decided:
                outcome.decided.append(payment)
    return to_charge


@transaction.atomic
def payment_give_up(*, payment_id: str, reason: str, message: str, event: Envelope | None = None) -> Payment:
    """Fail a payment still processing, e.g. after the gateway's retries ran out."""
    payment = Payment.objects.select_for_update().get(payment_id=payment_id)
    if payment.status == PaymentStatus.PROCESSING:
        _fail(payment, reason=reason, message=message, actor=WORKER_ACTOR)
        if event is not None:
            inbox.claim(consumer=INBOX_CONSUMER, event=event)
    return payment


@transaction.atomic
def payment_abandon(*, event: Envelope, message: str) -> Payment | None:
    """Fail an undecided payment whose processing crashed for good (its task is dead-lettered)."""
    payment_id = event.data.get("paymentId")
    payment = Payment.objects.select_for_update().filter(payment_id=payment_id).first()
    if payment is not None and not payment.is_decided and payment.status:
        if payment.status == PaymentStatus.REQUESTED:
            _transition(payment, PaymentStatus.PROCESSING, actor=WORKER_ACTOR)
        _fail(payment, reason=FailureReason.PROCESSING_ERROR, message=message, actor=WORKER_ACTOR)
    return payment


@transaction.atomic
def payment_retry(*, payment_id: str, actor: str) -> Payment:
    """An operator retries a payment that failed only because the gateway was unavailable."""
    payment = Payment.objects.select_for_update().get(payment_id=payment_id)
    if payment.status != PaymentStatus.FAILED or payment.failure_reason != FailureReason.GATEWAY_UNAVAILABLE:
        raise PAYMENT_STATES.refusal(payment, PaymentStatus.PROCESSING)
    payment.failure_reason = payment.failure_message = ""
    _transition(payment, PaymentStatus.PROCESSING, actor=actor, reason="retry after gateway_unavailable")
    payment.save()
    enqueue_on_commit(task_names.CHARGE_PAYMENT, payment.payment_id)
    return payment
