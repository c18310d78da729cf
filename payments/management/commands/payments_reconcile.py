"""`python manage.py payments_reconcile`: compare payments and refunds with the ledger's postings;
exit 0 when they agree, 1 listing every difference when they do not."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from payments import services


class Command(BaseCommand):
    help = (
        "Check that every captured payment and completed refund has its ledger posting (same amount, "
        "currency and merchant) and that no payment:/refund: posting lacks its payment or refund; "
        "exit 1 on any difference. The run is recorded and new differences raise an alert, as the "
        "scheduled run does."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        run = services.payments_reconcile()
        summary = (
            f"{run.payments_checked} payments, {run.refunds_checked} refunds, "
            f"{run.postings_checked} postings checked"
        )
        if run.ok:
            self.stdout.write(self.style.SUCCESS(f"payments and the ledger agree. {summary}."))
            return
        self.stdout.write(self.style.ERROR(f"{len(run.differences)} difference(s). {summary}:"))
        for difference in run.differences:
            expected = "; ".join(difference["expected"] or []) or "no posting"
            posted = "; ".join(difference["posted"] or []) or "none"
            self.stdout.write(
                f"  {difference['kind']} {difference['transactionId']} (status {difference['status']}): "
                f"expected {expected}; posted {posted}"
            )
        if run.alert_id:
            self.stdout.write(f"compliance alert {run.alert_id} raised for the new ones.")
        raise SystemExit(1)
