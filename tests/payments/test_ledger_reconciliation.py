"""Payments against the ledger: a captured payment whose posting never came (or came wrong) is
found, raises one `reconciliation_mismatch` alert, and makes `payments_reconcile` exit 1."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from audit.models import ComplianceAlert
from ledger import postings
from ledger import services as ledger_services
from payments import services
from payments.models import LedgerReconciliation, Payment, PaymentStatus, Refund, RefundStatus
from tests.support.builders import stored_payment
from tests.support.processes import child_env, manage

# The reconciliation reads in a REPEATABLE READ snapshot of its own: it needs real transactions.
pytestmark = pytest.mark.django_db(transaction=True)

# An injected clock: the runs below look at the world from here, so that only this test's
# payments (captured before it, beyond the grace period) are old enough to be judged, whatever
# else the shared test database holds that is younger.
NOW = datetime(2021, 6, 1, 12, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1)


def captured(amount: str = "500.00", currency: str = "USD", *, post: str | None = None) -> Payment:
    """A payment captured long ago; with `post`, the ledger posted this amount for it."""
    payment = stored_payment(
        merchant_id=f"shop_{uuid.uuid4().hex[:6]}",
        amount=Decimal(amount),
        currency=currency,
        processed_at=LONG_AGO,
        gateway_reference="ch_test",
    )
    if post is not None:
        ledger_services.transaction_post(
            posting=postings.capture_posting(
                payment_id=payment.payment_id,
                merchant_id=payment.merchant_id,
                amount=Decimal(post),
                currency=currency,
                user_id=payment.user_id,
            ),
            actor="test",
            correlation_id=None,
        )
    return payment


def refunded(payment: Payment, amount: str, *, post: bool) -> Refund:
    refund = Refund.objects.create(
        refund_id=f"re_{uuid.uuid4().hex[:12]}",
        payment=payment,
        amount=Decimal(amount),
        status=RefundStatus.SUCCEEDED,
        requested_by="test",
        completed_at=LONG_AGO,
    )
    if post:
        request = postings.refund_posting(
            payment_id=payment.payment_id,
            refund_id=refund.refund_id,
            merchant_id=payment.merchant_id,
            amount=refund.amount,
            currency=payment.currency,
        )
        ledger_services.transaction_post(
            posting=postings.from_request(request), actor="test", correlation_id=None
        )
    return refund


def about(run: LedgerReconciliation, *payments: Payment) -> list[dict[str, Any]]:
    ids = {p.payment_id for p in payments}
    return [d for d in run.differences if d.get("paymentId") in ids]


def alerts_about(payment: Payment) -> list[ComplianceAlert]:
    return [
        alert
        for alert in ComplianceAlert.objects.filter(rule="reconciliation_mismatch", subject="payments-ledger")
        if any(d.get("paymentId") == payment.payment_id for d in alert.details["differences"])
    ]


def test_a_consistent_set_of_payments_refunds_and_postings_is_ok() -> None:
    payment = captured("500.00", post="500.00")
    refunded(payment, "20.00", post=True)
    Payment.objects.filter(pk=payment.pk).update(
        status=PaymentStatus.PARTIALLY_REFUNDED, refunded_amount=Decimal("20.00")
    )

    run = services.payments_reconcile(now=NOW)

    assert run.ok, run.differences
    assert run.payments_checked >= 1 and run.refunds_checked >= 1 and run.postings_checked >= 2
    assert not run.alert_id


def test_a_capture_that_never_reached_its_merchant_and_one_posted_wrong_raise_one_alert() -> None:
    missing = captured("500.00")
    wrong = captured("500.00", post="0.01")
    refund_missing = refunded(captured("80.00", post="80.00"), "80.00", post=False)

    run = services.payments_reconcile(now=NOW)

    assert not run.ok
    [never_posted] = about(run, missing)
    assert never_posted["kind"] == "posting_missing" and never_posted["posted"] is None
    assert never_posted["expected"] == sorted(
        [f"credit merchant:{missing.merchant_id} 500.00 USD", "debit external:psp 500.00 USD"]
    )
    [posted_wrong] = about(run, wrong)
    assert posted_wrong["kind"] == "posting_differs"
    assert f"credit merchant:{wrong.merchant_id} 0.01 USD" in posted_wrong["posted"]
    [refund_difference] = about(run, refund_missing.payment)
    assert refund_difference["kind"] == "posting_missing"
    assert refund_difference["transactionId"] == f"refund:{refund_missing.refund_id}"

    # One alert lists them (a scheduled run may have raised it first: still one).
    [alert] = alerts_about(missing)
    assert alert.severity == "critical"
    assert alerts_about(wrong) == [alert]

    # Found again: recorded, not alerted again.
    again = services.payments_reconcile(now=NOW)
    assert about(again, missing, wrong) == about(run, missing, wrong)
    assert alerts_about(missing) == [alert]


def test_a_posting_for_a_payment_that_failed_is_a_difference() -> None:
    payment = captured("42.00", post="42.00")
    Payment.objects.filter(pk=payment.pk).update(status=PaymentStatus.FAILED)
    with connection.cursor() as cursor:
        # The posting is as old as the payment (postings are immutable: triggers off for this).
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(
                "UPDATE ledger_transaction SET posted_at = %s WHERE transaction_id = %s",
                [LONG_AGO, f"payment:{payment.payment_id}"],
            )
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")

    run = services.payments_reconcile(now=NOW)

    [difference] = about(run, payment)
    assert difference["kind"] == "posting_without_payment" and difference["status"] == "failed"


@pytest.mark.processes  # runs the command
def test_the_command_exits_1_and_lists_the_difference() -> None:
    missing = captured("500.00")
    db = connection.settings_dict
    env = child_env({"DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"})

    result = subprocess.run(  # noqa: S603 - our own command
        manage("payments_reconcile"), env=env, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"posting_missing payment:{missing.payment_id}" in result.stdout


def test_the_admin_start_page_shows_the_newest_runs_differences() -> None:
    from django.test import Client

    from core.roles import AUDITORS, OPERATORS
    from tests.support.users import make_api_user

    captured("500.00")
    services.payments_reconcile(now=NOW)
    for role in (OPERATORS, AUDITORS):
        user = make_api_user(role, role=role)
        user.is_staff = True
        user.save()
        browser = Client()
        browser.force_login(user)
        page = browser.get("/admin/").content.decode()
        run = services.latest_reconciliation()  # this test's, unless beat has run one since
        assert run is not None and not run.ok
        at = page.index("Payments not matching the ledger")
        row = page[page.rindex("<tr", 0, at) : page.index("</tr>", at)]
        assert f"<strong>{len(run.differences)}</strong>" in row
        assert f"/admin/payments/ledgerreconciliation/{run.pk}/change/" in row
