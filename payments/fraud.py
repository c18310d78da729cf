"""Fraud-check rules: a chain of pluggable rules (PAYMENTS_FRAUD_RULES); the first hit wins."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from payments.models import Payment


@dataclass(frozen=True)
class FraudHit:
    rule: str
    message: str


class FraudRule(Protocol):
    name: str

    def check(self, payment: Payment) -> str | None:
        """A message saying why the payment looks fraudulent, or None."""


def _method(payment: Payment) -> dict[str, Any]:
    method = payment.request.get("paymentMethod")
    return method if isinstance(method, dict) else {}


class VelocityRule:
    """More than PAYMENTS_FRAUD_VELOCITY_MAX payments by one user within the window."""

    name = "velocity"

    def check(self, payment: Payment) -> str | None:
        window = timedelta(seconds=settings.PAYMENTS_FRAUD_VELOCITY_WINDOW_S)
        recent = Payment.objects.filter(
            user_id=payment.user_id,
            created_at__gte=timezone.now() - window,
            created_at__lte=payment.created_at,
        ).count()
        limit = settings.PAYMENTS_FRAUD_VELOCITY_MAX
        if recent > limit:
            return f"user {payment.user_id} made {recent} payments within {window}, the limit is {limit}"
        return None


class AmountThresholdRule:
    """An amount above PAYMENTS_FRAUD_AMOUNT_THRESHOLD (in the payment's currency)."""

    name = "amount_threshold"

    def check(self, payment: Payment) -> str | None:
        threshold = Decimal(settings.PAYMENTS_FRAUD_AMOUNT_THRESHOLD)
        if payment.amount > threshold:
            return f"amount {payment.amount:f} {payment.currency} is above the review threshold {threshold}"
        return None


class BlockedCountryRule:
    """The card's or the customer's country is in PAYMENTS_FRAUD_BLOCKED_COUNTRIES."""

    name = "blocked_country"

    def check(self, payment: Payment) -> str | None:
        customer = payment.request.get("customer") or {}
        countries = {_method(payment).get("country"), customer.get("country")} - {None}
        blocked = {c.upper() for c in settings.PAYMENTS_FRAUD_BLOCKED_COUNTRIES}
        hit = sorted(str(c).upper() for c in countries if str(c).upper() in blocked)
        return f"country {hit[0]} is blocked" if hit else None


class BlockedBinRule:
    """The card's BIN (its first six digits) is in PAYMENTS_FRAUD_BLOCKED_BINS."""

    name = "blocked_bin"

    def check(self, payment: Payment) -> str | None:
        card_bin = str(_method(payment).get("bin") or "")[:6]
        if card_bin and card_bin in settings.PAYMENTS_FRAUD_BLOCKED_BINS:
            return f"card BIN {card_bin} is blocked"
        return None


def fraud_check(payment: Payment) -> FraudHit | None:
    for path in settings.PAYMENTS_FRAUD_RULES:
        rule: FraudRule = import_string(path)()
        message = rule.check(payment)
        if message:
            return FraudHit(rule=rule.name, message=f"{rule.name}: {message}")
    return None
