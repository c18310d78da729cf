"""The payment gateway interface, its circuit breaker, and the simulator (the default gateway).

A real gateway plugs in behind `PaymentGateway` (dotted path in PAYMENTS_GATEWAY). Every call
carries an idempotency key: after a timeout the outcome is unknown, and asking again with the
same key returns the first outcome instead of charging twice.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

import redis
from django.conf import settings
from django.db import connection, transaction
from django.utils.module_loading import import_string

from core.circuit_breaker import CircuitBreaker
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
    """Outcomes by card token (docs/payments.md, Gateway), remembered per idempotency key in the database.

    Beyond the basic test tokens, two model the timeouts a real gateway has:
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
        decided = self.DECLINES.get(token or "", "captured")
        first_outcome = "" if token in (self.ALWAYS_TIMEOUT, self.TIMEOUT_ONCE) else decided
        later_outcome = "" if token == self.ALWAYS_TIMEOUT else decided
        # One statement, atomic on its own: the first attempt creates the charge, a later one
        # counts itself and decides the outcome if no attempt has yet; a decided outcome stays.
        table = SimulatedCharge._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"""
                INSERT INTO {table} (idempotency_key, reference, amount, currency, outcome, attempts,
                                     refunded_amount)
                VALUES (%s, %s, %s, %s, %s, 1, 0)
                ON CONFLICT (idempotency_key) DO UPDATE SET
                    attempts = {table}.attempts + 1,
                    outcome = CASE WHEN {table}.outcome = '' THEN %s ELSE {table}.outcome END
                RETURNING reference, outcome, attempts
                """,  # noqa: S608 - the table name is ours
                [
                    idempotency_key,
                    "sim_ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24],
                    amount,
                    currency,
                    first_outcome,
                    later_outcome,
                ],
            )
            reference, outcome, attempts = cursor.fetchone()
        charge = SimulatedCharge(reference=reference, outcome=outcome, attempts=attempts)
        timed_out = not outcome
        lost_answer = token == self.TIMEOUT_AFTER_CAPTURE and attempts == 1
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


@cache
def _breaker_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def gateway_breaker(*, clock: Callable[[], float] | None = time.time) -> CircuitBreaker:
    """The gateway's circuit, shared by every worker through the broker's Redis.

    Its clock is each worker's own (time.time), as it always was; its state is the hash
    `circuit:payments-gateway` (the three strings `circuit:payments-gateway:{failures,open_until,
    probe}` before the breaker was shared with notifications: a circuit open during that deploy
    closed once, and the two old strings can be deleted).
    """
    return CircuitBreaker(
        "payments-gateway",
        client=lambda: _breaker_redis(settings.CELERY_BROKER_URL),
        failure_threshold=settings.PAYMENTS_GATEWAY_BREAKER_THRESHOLD,
        reset_timeout_s=settings.PAYMENTS_GATEWAY_BREAKER_RESET_S,
        # A probe's slot outlives a slow probe at least as long as the cooldown.
        probe_ttl_s=max(settings.PAYMENTS_GATEWAY_BREAKER_RESET_S, 1.0),
        counted=(GatewayTimeout,),
        clock=clock,
    )
