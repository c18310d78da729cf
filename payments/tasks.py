"""Celery tasks of the payments domain: decode the event, call the service, nothing more."""

from __future__ import annotations

import random
import time
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from bridge.codec import Envelope
from bridge.tasks import EventTask
from kafka_platform import metrics
from payments import services
from payments.events import FailureReason, PaymentRequested
from payments.gateway import GatewayTimeout


def gateway_retry_countdown(retries: int) -> float:
    """Exponential backoff with full jitter, capped (AWS architecture blog's 'full jitter')."""
    ceiling = min(
        settings.PAYMENTS_GATEWAY_RETRY_BACKOFF * 2**retries, settings.PAYMENTS_GATEWAY_RETRY_BACKOFF_MAX
    )
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not cryptography


class PaymentRequestTask(EventTask):
    def on_event_failed(self, event: Envelope, exc: BaseException) -> None:
        """A request whose processing failed for good gets its payments.payment-failed event."""
        services.payment_abandon(event=event, message=f"{type(exc).__name__}: {exc}")


@shared_task(name="payments.process_payment_requested", bind=True, base=PaymentRequestTask, max_retries=None)
def process_payment_requested(self: Task, payload: dict[str, Any]) -> str:
    started = time.perf_counter()
    event = Envelope.from_task_payload(payload)
    if services.already_handled(event):
        return "duplicate"
    request = PaymentRequested.model_validate(event.data)
    payment = services.payment_accept(event=event, request=request)
    if payment.is_decided:
        return payment.status
    try:
        payment = services.payment_charge(event=event, payment_id=payment.payment_id)
    except GatewayTimeout as exc:
        if self.request.retries >= settings.PAYMENTS_GATEWAY_MAX_RETRIES:
            payment = services.payment_give_up(
                event=event,
                payment_id=payment.payment_id,
                reason=FailureReason.GATEWAY_UNAVAILABLE,
                message=f"gateway unavailable after {self.request.retries + 1} attempts: {exc}",
            )
        else:
            raise self.retry(exc=exc, countdown=gateway_retry_countdown(self.request.retries)) from exc
    metrics.PAYMENT_PROCESSING_DURATION.observe(time.perf_counter() - started)
    return payment.status
