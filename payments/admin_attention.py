"""The payments item of the admin's start page: differences between payments and the ledger."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from core.admin_site import Attention
from payments.services import latest_reconciliation


def ledger_differences(request: HttpRequest) -> Attention | None:
    """How many differences the newest reconciliation of payments against the ledger found."""
    if not request.user.has_perm("payments.view_ledgerreconciliation"):
        return None
    run = latest_reconciliation()
    label = "Payments not matching the ledger"
    if run is None:
        return Attention(label, 0, reverse("admin:payments_ledgerreconciliation_changelist"), "never checked")
    return Attention(
        label,
        len(run.differences),
        reverse("admin:payments_ledgerreconciliation_change", args=[run.pk]),
        f"checked {timesince(run.started_at, timezone.now())} ago",
    )
