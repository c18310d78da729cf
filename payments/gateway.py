"""The payment gateway interface and its simulator (CONTRACT §4), the default gateway."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

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


class PaymentGateway(Protocol):
    def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, method: str | dict[str, Any]
    ) -> ChargeResult: ...


class SimulatedGateway:
    """Outcomes by card token; the same idempotency key always gives the same charge."""

    DECLINES = {
        "tok_chargeDeclined": (FailureReason.CARD_DECLINED, "The card was declined."),
        "tok_insufficientFunds": (FailureReason.INSUFFICIENT_FUNDS, "The card has insufficient funds."),
    }
    TIMEOUT_TOKEN = "tok_gatewayTimeout"  # noqa: S105 - a test card token, not a secret

    def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, method: str | dict[str, Any]
    ) -> ChargeResult:
        token = method.get("token") if isinstance(method, dict) else None
        reference = "sim_ch_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:24]
        if token == self.TIMEOUT_TOKEN:
            raise GatewayTimeout(f"gateway timed out charging {idempotency_key}")
        if token in self.DECLINES:
            reason, message = self.DECLINES[token]
            return ChargeResult(captured=False, reference=reference, decline_reason=reason, message=message)
        return ChargeResult(captured=True, reference=reference)


@cache
def get_gateway() -> PaymentGateway:
    return import_string(settings.PAYMENTS_GATEWAY)()
