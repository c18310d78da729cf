"""The payment gateway interface, its circuit breaker, and the simulator (the default gateway).

A real gateway plugs in behind `PaymentGateway` (dotted path in PAYMENTS_GATEWAY). Every call
carries an idempotency key: after a timeout the outcome is unknown, and asking again with the
same key returns the first outcome instead of charging twice.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

from kafka_platform.circuit_breaker import CircuitBreaker
from payments.events import FailureReason


class GatewayTimeout(Exception):
    """The gateway did not answer in time: the outcome is unknown, not failed.

    Resolve it by asking again with the same idempotency key, never by charging anew.
    """


@dataclass(frozen=True)
class ChargeResult:
    captured: bool
    reference: str
    decline_reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class RefundResult:
    reference: str


class PaymentGateway(Protocol):
    def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, method: str | dict[str, Any]
    ) -> ChargeResult: ...

    def refund(
        self, *, idempotency_key: str, charge_reference: str, amount: Decimal, currency: str
    ) -> RefundResult: ...


class SimulatedGateway:
    """Outcomes by card token (CONTRACT §4), remembered per idempotency key in the database.

    Beyond the contract's tokens, two model the timeouts a real gateway has:
    `tok_gatewayTimeoutOnce` times out on the first attempt without charging, then succeeds;
    `tok_timeoutAfterCapture` captures on the first attempt but the answer is lost in a timeout.
    """

    DECLINES = {
        "tok_chargeDeclined": FailureReason.CARD_DECLINED,
        "tok_insufficientFunds": FailureReason.INSUFFICIENT_FUNDS,
    }
    DECLINE_MESSAGES = {
        FailureReason.CARD_DECLINED: "The card was declined.",
        FailureReason.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    }
    # Test card tokens, not secrets.
    ALWAYS_TIMEOUT = "tok_gatewayTimeout"  # noqa: S105
    TIMEOUT_ONCE = "tok_gatewayTimeoutOnce"  # noqa: S105
    TIMEOUT_AFTER_CAPTURE = "tok_timeoutAfterCapture"  # noqa: S105

    def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, method: str | dict[str, Any]
    ) -> ChargeResult:
        from payments.models import SimulatedCharge

        token = method.get("token") if isinstance(method, dict) else None
        with transaction.atomic():
            charge, _ = SimulatedCharge.objects.select_for_update().get_or_create(
                idempotency_key=idempotency_key,
                defaults={
                    "reference": "sim_ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24],
                    "amount": amount,
                    "currency": currency,
                },
            )
            charge.attempts += 1
            lost_answer = False
            if not charge.outcome:
                if token == self.ALWAYS_TIMEOUT or (token == self.TIMEOUT_ONCE and charge.attempts == 1):
                    charge.save(update_fields=["attempts"])
                    timed_out = True
                else:
                    timed_out = False
                    charge.outcome = self.DECLINES.get(token or "", "captured")
                    lost_answer = token == self.TIMEOUT_AFTER_CAPTURE and charge.attempts == 1
                    charge.save(update_fields=["attempts", "outcome"])
            else:
                timed_out = False
                charge.save(update_fields=["attempts"])
        if timed_out or lost_answer:
            raise GatewayTimeout(f"gateway timed out charging {idempotency_key}")
        if charge.outcome == "captured":
            return ChargeResult(captured=True, reference=charge.reference)
        return ChargeResult(
            captured=False,
            reference=charge.reference,
            decline_reason=charge.outcome,
            message=self.DECLINE_MESSAGES[charge.outcome],
        )

    def refund(
        self, *, idempotency_key: str, charge_reference: str, amount: Decimal, currency: str
    ) -> RefundResult:
        from payments.models import SimulatedCharge, SimulatedRefund

        with transaction.atomic():
            charge = SimulatedCharge.objects.select_for_update().get(reference=charge_reference)
            refund, created = SimulatedRefund.objects.get_or_create(
                idempotency_key=idempotency_key, defaults={"charge": charge, "amount": amount}
            )
            if created:
                if charge.refunded_amount + amount > charge.amount:
                    raise ValueError(f"refund of {amount} exceeds what is left of {charge.reference}")
                charge.refunded_amount += amount
                charge.save(update_fields=["refunded_amount"])
        return RefundResult(reference="sim_re_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24])


@cache
def get_gateway() -> PaymentGateway:
    return import_string(settings.PAYMENTS_GATEWAY)()


def gateway_breaker() -> CircuitBreaker:
    return CircuitBreaker(
        "payments-gateway",
        failure_threshold=settings.PAYMENTS_GATEWAY_BREAKER_THRESHOLD,
        reset_timeout_s=settings.PAYMENTS_GATEWAY_BREAKER_RESET_S,
        counted=(GatewayTimeout,),
    )
