"""Compliance rules: plug-ins that look at each new audit record and may report a finding.

A rule is a class named by its dotted path in COMPLIANCE_RULES. It declares the audit `actions`
it watches (other records never reach it, which keeps the record path fast) and `evaluate`s the
new records of a batch (one record is a batch of one) at once, a Finding or None for each, with
the batch's queries made once rather than per record. Rules run in the transaction that stores
the records, under the chain lock, so they see every earlier record and a redelivered event never
raises a second alert. Thresholds are read from settings at evaluation time.

A finding alerts auditors after the fact; it never stops a payment. Deciding a payment is for the
fraud rules of payments/fraud.py, another engine with its own, looser limits.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, Protocol

from django.conf import settings
from django.db.models.fields.json import KT
from django.utils.module_loading import import_string

from audit.events import AuditAction
from audit.models import PAYMENT_REQUESTED_ACTION, AuditEvent, ComplianceRuleName, Severity


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    # At most one alert ever per key.
    dedupe_key: str | None = None
    # No second alert of this rule for this subject observed within this period.
    quiet_period: timedelta | None = None


class Rule(Protocol):
    name: ClassVar[str]
    actions: ClassVar[frozenset[str]]

    def evaluate(self, events: Sequence[AuditEvent]) -> list[Finding | None]: ...


def _amount(details: dict[str, Any]) -> Decimal | None:
    try:
        amount = Decimal(str(details.get("amount")))
    except (InvalidOperation, ValueError):
        return None
    return amount if amount.is_finite() else None


class HighValueTransaction:
    """A payment request of at least COMPLIANCE_HIGH_VALUE_THRESHOLD in its own currency."""

    name = ComplianceRuleName.HIGH_VALUE_TRANSACTION.value
    actions = frozenset({PAYMENT_REQUESTED_ACTION})

    def evaluate(self, events: Sequence[AuditEvent]) -> list[Finding | None]:
        threshold = Decimal(settings.COMPLIANCE_HIGH_VALUE_THRESHOLD)
        return [self._one(event, threshold) for event in events]

    def _one(self, event: AuditEvent, threshold: Decimal) -> Finding | None:
        details = event.data.get("details") or {}
        amount = _amount(details)
        if amount is None or amount < threshold:
            return None
        subject = f"{event.subject_type or 'payment'}:{event.subject_id}"
        return Finding(
            rule=self.name,
            severity=Severity.MEDIUM,
            subject=subject,
            details={
                "amount": f"{amount:f}",
                "currency": details.get("currency"),
                "threshold": f"{threshold:f}",
                "userId": details.get("userId"),
                "merchantId": details.get("merchantId"),
            },
            dedupe_key=f"{self.name}:{subject}",
        )


def _busiest_window(times: list[datetime], *, holding: datetime, window: timedelta) -> int:
    """How many of `times` fall in the busiest window (end - window, end] that holds `holding`,
    `end` one of `times`.

    Records can be logged out of their order (two batches of one partition in two worker
    processes; the later batch can take the chain lock first), so a rule does not only look back
    from the record in hand: whichever record of a burst is logged last sees the whole burst.
    `times` must cover (holding - window, holding + window).
    """
    ordered = sorted(times)
    # Each candidate end at index j holds ordered[first:j + 1], `first` found by bisection: a busy
    # user's hundreds of payments cost n log n, not n squared, per record.
    held = (j for j, end in enumerate(ordered) if end >= holding)
    return max((j + 1 - bisect.bisect_right(ordered, ordered[j] - window) for j in held), default=0)


class Velocity:
    """More than COMPLIANCE_VELOCITY_MAX_PAYMENTS (10) payment requests of one user within
    COMPLIANCE_VELOCITY_WINDOW_SECONDS (an hour; by the events' own times; the busiest such window
    holding the record: `_busiest_window`, as a user's payments are keyed apart and arrive in any
    order). An alert only: payments' fraud rule of the same wire name refuses above 20 an hour."""

    name = ComplianceRuleName.VELOCITY.value
    actions = frozenset({PAYMENT_REQUESTED_ACTION})

    def evaluate(self, events: Sequence[AuditEvent]) -> list[Finding | None]:
        window = timedelta(seconds=settings.COMPLIANCE_VELOCITY_WINDOW_SECONDS)
        limit = settings.COMPLIANCE_VELOCITY_MAX_PAYMENTS
        users = {event: _user_id(event) for event in events}
        wanted = {user for user in users.values() if user}
        if not wanted:
            return [None] * len(events)
        # One query for the batch: every payment request of its users around its records' times
        # (the same expression as the partial index audit_payment_user_time_idx).
        times: dict[str, list[datetime]] = {}
        rows = (
            AuditEvent.objects.filter(
                action=PAYMENT_REQUESTED_ACTION,
                occurred_at__gt=min(e.occurred_at for e in events) - window,
                occurred_at__lt=max(e.occurred_at for e in events) + window,
            )
            .annotate(user_id=KT("data__details__userId"))
            .filter(user_id__in=wanted)
            .values_list("user_id", "occurred_at")
        )
        for user, occurred_at in rows:
            times.setdefault(user, []).append(occurred_at)
        findings: list[Finding | None] = []
        for event in events:
            user_id = users[event]
            if not user_id:
                findings.append(None)
                continue
            around = [t for t in times.get(user_id, []) if abs(t - event.occurred_at) < window]
            count = _busiest_window(around, holding=event.occurred_at, window=window)
            findings.append(
                None
                if count <= limit
                else Finding(
                    rule=self.name,
                    severity=Severity.MEDIUM,
                    subject=f"user:{user_id}",
                    details={"payments": count, "limit": limit, "windowSeconds": int(window.total_seconds())},
                    quiet_period=window,
                )
            )
        return findings


def _user_id(event: AuditEvent) -> str | None:
    user_id = (event.data.get("details") or {}).get("userId")
    return user_id if isinstance(user_id, str) and user_id else None


class RepeatedAuthFailure:
    """COMPLIANCE_AUTH_FAILURE_THRESHOLD failed authentications of one subject (a username, or the
    client address when no username was given) within COMPLIANCE_AUTH_FAILURE_WINDOW_SECONDS
    (the busiest such window holding the record: `_busiest_window`)."""

    name = ComplianceRuleName.REPEATED_AUTH_FAILURE.value
    actions = frozenset({AuditAction.AUTH_FAILED})

    def evaluate(self, events: Sequence[AuditEvent]) -> list[Finding | None]:
        # Failed logins are rare beside payments: a query per record.
        return [self._one(event) for event in events]

    def _one(self, event: AuditEvent) -> Finding | None:
        window = timedelta(seconds=settings.COMPLIANCE_AUTH_FAILURE_WINDOW_SECONDS)
        threshold = settings.COMPLIANCE_AUTH_FAILURE_THRESHOLD
        times = AuditEvent.objects.filter(
            action=AuditAction.AUTH_FAILED,
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            occurred_at__gt=event.occurred_at - window,
            occurred_at__lt=event.occurred_at + window,
        ).values_list("occurred_at", flat=True)
        count = _busiest_window(list(times), holding=event.occurred_at, window=window)
        if count < threshold:
            return None
        return Finding(
            rule=self.name,
            severity=Severity.HIGH,
            subject=f"{event.subject_type}:{event.subject_id}",
            details={
                "failures": count,
                "threshold": threshold,
                "windowSeconds": int(window.total_seconds()),
                "lastChannel": (event.data.get("details") or {}).get("channel"),
                "lastRemoteAddr": (event.data.get("details") or {}).get("remoteAddr"),
            },
            quiet_period=window,
        )


@functools.cache
def _rules_by_action(paths: tuple[str, ...]) -> dict[str, tuple[Rule, ...]]:
    by_action: dict[str, list[Rule]] = {}
    for path in paths:
        rule: Rule = import_string(path)()
        for action in rule.actions:
            by_action.setdefault(action, []).append(rule)
    return {action: tuple(rules) for action, rules in by_action.items()}


def rules_for(action: str) -> tuple[Rule, ...]:
    """The configured rules that watch `action`."""
    return _rules_by_action(tuple(settings.COMPLIANCE_RULES)).get(action, ())
