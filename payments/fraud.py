"""Fraud-check rules: a chain of pluggable rules (PAYMENTS_FRAUD_RULES); the first hit wins.

These decide a payment before it is charged: a hit fails it `fraud_suspected`. Audit's compliance
rules (audit/rules.py) are another engine with other limits, which only alert after the fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.db.models import Count, OuterRef, Subquery
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
    """More than PAYMENTS_FRAUD_VELOCITY_MAX (20) payments by one user within
    PAYMENTS_FRAUD_VELOCITY_WINDOW_S (an hour): the payment is refused. Not audit's compliance
    `velocity` (more than 10 an hour raises an alert), though both carry the name on the wire."""

    name = "velocity"

    def check(self, payment: Payment) -> str | None:
        return self.check_many([payment])[payment.payment_id]

    def check_many(self, payments: Sequence[Payment]) -> dict[str, str | None]:
        """`check` for a batch, with one query: each payment's count of its user's payments in the
        window up to its own."""
        window = timedelta(seconds=settings.PAYMENTS_FRAUD_VELOCITY_WINDOW_S)
        recent = Payment.objects.filter(
            user_id=OuterRef("user_id"),
            created_at__gte=timezone.now() - window,
            created_at__lte=OuterRef("created_at"),
        )
        counts = dict(
            Payment.objects.filter(pk__in=[p.pk for p in payments])
            .annotate(recent=Subquery(recent.values("user_id").annotate(n=Count("*")).values("n")))
            .values_list("payment_id", "recent")
        )
        limit = settings.PAYMENTS_FRAUD_VELOCITY_MAX
        return {
            p.payment_id: (
                f"user {p.user_id} made {counts[p.payment_id]} payments within {window}, the limit is {limit}"
                if (counts.get(p.payment_id) or 0) > limit
                else None
            )
            for p in payments
        }


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
    return fraud_checks([payment])[payment.payment_id]


def fraud_checks(payments: Sequence[Payment]) -> dict[str, FraudHit | None]:
    """`fraud_check` of each payment (saved rows), by paymentId; a rule with `check_many` checks
    the whole batch at once."""
    hits: dict[str, FraudHit | None] = {p.payment_id: None for p in payments}
    for path in settings.PAYMENTS_FRAUD_RULES:
        rule: FraudRule = import_string(path)()
        pending = [p for p in payments if hits[p.payment_id] is None]
        if not pending:
            break
        check_many = getattr(rule, "check_many", None)
        messages = check_many(pending) if check_many else {p.payment_id: rule.check(p) for p in pending}
        for p in pending:
            if message := messages[p.payment_id]:
                hits[p.payment_id] = FraudHit(rule=rule.name, message=f"{rule.name}: {message}")
    return hits
