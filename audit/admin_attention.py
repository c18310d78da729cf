"""Audit's item on the admin start page (core.admin_site): open compliance alerts."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse

from audit.models import AlertStatus, ComplianceAlert
from core.admin_site import Attention, register_attention


def _open_alerts(request: HttpRequest) -> Attention | None:
    if not request.user.has_perm("audit.view_compliancealert"):
        return None
    return Attention(
        "Compliance alerts open",
        ComplianceAlert.objects.filter(status=AlertStatus.OPEN).count(),
        reverse("admin:audit_compliancealert_changelist") + f"?status__exact={AlertStatus.OPEN}",
    )


def register() -> None:
    register_attention(_open_alerts, place=20)
