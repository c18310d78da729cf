"""Payments against the ledger: every capture and refund reached the ledger, as it was, once."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.services import ComplianceRuleName, Severity, compliance_alert_raise
from core.money import format_money
from ledger import postings
from ledger import selectors as ledger_selectors
from ledger.events import TransactionRequested
from ledger.kinds import Direction
from payments.models import LedgerReconciliation, Payment, PaymentStatus, Refund, RefundStatus

logger = logging.getLogger(__name__)

RULE = ComplianceRuleName.RECONCILIATION_MISMATCH.value
SEVERITY = Severity.CRITICAL.value
ALERT_SUBJECT = "payments-ledger"
# An alert lists at most this many new differences (the run keeps them all).
ALERT_MAX_LISTED = 50

# Statuses of a payment whose capture the ledger must hold (refunds and settlements are postings
# of their own and leave the capture's in place).
POSTED_STATUSES = frozenset(
    {
        PaymentStatus.CAPTURED,
        PaymentStatus.PARTIALLY_REFUNDED,
        PaymentStatus.REFUNDED,
        PaymentStatus.SETTLED,
    }
)


class DifferenceKind:
    POSTING_MISSING = "posting_missing"
    POSTING_DIFFERS = "posting_differs"
    POSTING_REVERSED = "posting_reversed"
    POSTING_WITHOUT_PAYMENT = "posting_without_payment"
    POSTING_WITHOUT_REFUND = "posting_without_refund"


Legs = frozenset[tuple[str, str, str, Any]]


def _shown(legs: Iterable[tuple[str, str, str, Any]]) -> list[str]:
    return sorted(
        f"{direction} {account} {format_money(amount, currency)} {currency}"
        for account, currency, direction, amount in legs
    )


def _capture_legs(payment: Payment) -> Legs:
    """The posting the ledger's own builder makes of this capture."""
    posting = postings.capture_posting(
        payment_id=payment.payment_id,
        merchant_id=payment.merchant_id,
        amount=payment.amount,
        currency=payment.currency,
        user_id=payment.user_id,
    )
    return frozenset((leg.account_id, leg.currency, leg.direction, leg.amount) for leg in posting.legs)


def _refund_request(refund: Refund) -> TransactionRequested:
    payment = refund.payment
    return postings.refund_posting(
        payment_id=payment.payment_id,
        refund_id=refund.refund_id,
        merchant_id=payment.merchant_id,
        amount=refund.amount,
        currency=payment.currency,
    )


def _refund_legs(refund: Refund) -> Legs:
    """The refund's posting: its request's amount from `fromAccount` to `toAccount` (read off the
    request rather than checked by `from_request`, which would refuse an odd merchant id)."""
    request = _refund_request(refund)
    return frozenset(
        {
            (request.fromAccount or "", refund.payment.currency, Direction.DEBIT.value, refund.amount),
            (request.toAccount or "", refund.payment.currency, Direction.CREDIT.value, refund.amount),
        }
    )


def _posted_legs(posted: ledger_selectors.PostedTransaction) -> Legs:
    return frozenset((leg.account_id, leg.currency, leg.direction, leg.amount) for leg in posted.legs)


@dataclass(frozen=True)
class _Findings:
    payments_checked: int
    refunds_checked: int
    postings_checked: int
    differences: list[dict[str, Any]]


def _difference(
    kind: str,
    transaction_id: str,
    *,
    status: str | None,
    expected: Legs | None,
    posted: ledger_selectors.PostedTransaction | None,
) -> dict[str, Any]:
    return {
        "kind": kind,
        "transactionId": transaction_id,
        "status": status,
        "expected": _shown(expected) if expected is not None else None,
        "posted": _shown(_posted_legs(posted)) if posted is not None else None,
    }


def _compare(
    *,
    transaction_id: str,
    status: str,
    expected: Legs | None,
    posted: ledger_selectors.PostedTransaction | None,
    settled_before_cutoff: bool,
    cutoff: datetime,
    kind_without: str,
) -> dict[str, Any] | None:
    """One payment's or refund's posting against what it should be (`expected` None: no posting)."""
    if expected is None:
        # Nothing should be posted (a failed payment, a refund not made) or it must be undone (a
        # reversed payment). A young posting may belong to a capture committed a moment ago.
        if posted is None or posted.reversed or posted.posted_at >= cutoff:
            return None
        return _difference(kind_without, transaction_id, status=status, expected=None, posted=posted)
    if posted is None:
        if not settled_before_cutoff:
            return None  # its posting may still be on its way
        return _difference(
            DifferenceKind.POSTING_MISSING, transaction_id, status=status, expected=expected, posted=None
        )
    if posted.reversed:
        return _difference(
            DifferenceKind.POSTING_REVERSED, transaction_id, status=status, expected=expected, posted=posted
        )
    if _posted_legs(posted) != expected:
        return _difference(
            DifferenceKind.POSTING_DIFFERS, transaction_id, status=status, expected=expected, posted=posted
        )
    return None


def _find_differences(cutoff: datetime) -> _Findings:
    differences: list[dict[str, Any]] = []
    with transaction.atomic(), connection.cursor() as cursor:
        # One snapshot of both domains: a posting committing meanwhile cannot look like a difference.
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        captures = {
            p.transaction_id: p
            for p in ledger_selectors.transactions_posted_under(postings.PAYMENT_TRANSACTION_PREFIX)
        }
        refund_postings = {
            p.transaction_id: p
            for p in ledger_selectors.transactions_posted_under(postings.REFUND_TRANSACTION_PREFIX)
        }
        postings_checked = len(captures) + len(refund_postings)
        payments_checked = 0
        for payment in Payment.objects.exclude(status="").order_by("payment_id").iterator(chunk_size=2000):
            payments_checked += 1
            transaction_id = postings.payment_transaction_id(payment.payment_id)
            found = _compare(
                transaction_id=transaction_id,
                status=payment.status,
                expected=_capture_legs(payment) if payment.status in POSTED_STATUSES else None,
                posted=captures.pop(transaction_id, None),
                settled_before_cutoff=payment.processed_at is not None and payment.processed_at < cutoff,
                cutoff=cutoff,
                kind_without=DifferenceKind.POSTING_WITHOUT_PAYMENT,
            )
            if found is not None:
                differences.append({**found, "paymentId": payment.payment_id})
        refunds_checked = 0
        for refund in (
            Refund.objects.select_related("payment").order_by("refund_id").iterator(chunk_size=2000)
        ):
            refunds_checked += 1
            transaction_id = _refund_request(refund).transactionId
            found = _compare(
                transaction_id=transaction_id,
                status=refund.status,
                expected=_refund_legs(refund) if refund.status == RefundStatus.SUCCEEDED else None,
                posted=refund_postings.pop(transaction_id, None),
                settled_before_cutoff=refund.completed_at is not None and refund.completed_at < cutoff,
                cutoff=cutoff,
                kind_without=DifferenceKind.POSTING_WITHOUT_REFUND,
            )
            if found is not None:
                differences.append(
                    {**found, "paymentId": refund.payment.payment_id, "refundId": refund.refund_id}
                )
        # What is left was posted under a payment's or refund's id that payments never had.
        for kind, orphans in (
            (DifferenceKind.POSTING_WITHOUT_PAYMENT, captures),
            (DifferenceKind.POSTING_WITHOUT_REFUND, refund_postings),
        ):
            for transaction_id, posted in sorted(orphans.items()):
                if posted.reversed or posted.posted_at >= cutoff:
                    continue
                differences.append(
                    _difference(kind, transaction_id, status=None, expected=None, posted=posted)
                )
    return _Findings(payments_checked, refunds_checked, postings_checked, differences)


def _key(difference: dict[str, Any]) -> str:
    return json.dumps(difference, sort_keys=True)


def payments_reconcile(*, now: datetime | None = None) -> LedgerReconciliation:
    """Compare every payment and refund with the ledger's postings of them.

    Every captured payment has its `payment:<id>` posting (external:psp to merchant:<merchantId>,
    its amount and currency), every completed refund its `refund:<id>` posting, and no such
    posting lacks its payment or refund. A capture or refund younger than
    PAYMENTS_RECONCILIATION_GRACE_S may still have its posting on the way and is not a difference.
    Differences the previous run did not find raise one `reconciliation_mismatch` alert (through
    audit's `compliance_alert_raise`); a run that finds the same ones again is recorded quietly.
    """
    started_at = now or timezone.now()
    cutoff = started_at - timedelta(seconds=settings.PAYMENTS_RECONCILIATION_GRACE_S)
    findings = _find_differences(cutoff)
    with transaction.atomic():
        # Concurrent runs (beat and an operator's command) queue here: one alert per difference.
        previous = LedgerReconciliation.objects.select_for_update().order_by("-id").first()
        seen = {_key(d) for d in previous.differences} if previous is not None else set()
        new = [d for d in findings.differences if _key(d) not in seen]
        run = LedgerReconciliation.objects.create(
            started_at=started_at,
            finished_at=timezone.now(),
            payments_checked=findings.payments_checked,
            refunds_checked=findings.refunds_checked,
            postings_checked=findings.postings_checked,
            differences=findings.differences,
            new_differences=len(new),
        )
        if new:
            _raise_alert(run, new)
    if not run.ok:
        logger.error("payments and the ledger differ: %s", run.differences)
    return run


def _raise_alert(run: LedgerReconciliation, new: list[dict[str, Any]]) -> None:
    alert = compliance_alert_raise(
        rule=RULE,
        severity=SEVERITY,
        subject=ALERT_SUBJECT,
        details={
            "check": "payments_against_ledger",
            "reconciliationId": run.pk,
            "differencesFound": len(run.differences),
            "newDifferences": len(new),
            "differences": new[:ALERT_MAX_LISTED],
        },
        dedupe_key=f"{RULE}:{ALERT_SUBJECT}:{run.pk}",
        observed_at=run.started_at,
    )
    if alert is not None:
        run.alert_id = str(alert.alert_id)
        run.save(update_fields=["alert_id"])


def latest_reconciliation() -> LedgerReconciliation | None:
    """The newest run, for the admin's start page."""
    return LedgerReconciliation.objects.order_by("-id").first()
