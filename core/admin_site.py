"""The admin site: its start page lists what needs an operator's or auditor's attention."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince


@dataclass(frozen=True)
class Attention:
    """One thing to look at: how many, what it means, and where to go."""

    label: str
    count: int
    url: str
    detail: str = ""


def _dead_letters(request: HttpRequest) -> Attention | None:
    from bridge.models import DeadLetter

    if not request.user.has_perm("bridge.view_deadletter"):
        return None
    pending = DeadLetter.objects.filter(replayed_at__isnull=True)
    return Attention(
        "Dead letters not replayed",
        pending.count(),
        reverse("admin:bridge_deadletter_changelist") + "?replayed_at__isnull=True",
    )


def _open_alerts(request: HttpRequest) -> Attention | None:
    from audit.models import AlertStatus, ComplianceAlert

    if not request.user.has_perm("audit.view_compliancealert"):
        return None
    return Attention(
        "Compliance alerts open",
        ComplianceAlert.objects.filter(status=AlertStatus.OPEN).count(),
        reverse("admin:audit_compliancealert_changelist") + f"?status__exact={AlertStatus.OPEN}",
    )


def _outbox_backlog(request: HttpRequest) -> Attention | None:
    from bridge.models import OutboxEvent

    if not request.user.has_perm("bridge.view_outboxevent"):
        return None
    unsent = OutboxEvent.objects.filter(sent_at__isnull=True)
    oldest = unsent.order_by("id").values_list("created_at", flat=True).first()
    return Attention(
        "Outbox events not yet published",
        unsent.count(),
        reverse("admin:bridge_outboxevent_changelist") + "?sent_at__isnull=True",
        f"oldest waiting {timesince(oldest, timezone.now())}" if oldest else "",
    )


def _stuck_partitions(request: HttpRequest) -> Attention | None:
    from bridge.models import StuckPartition

    if not request.user.has_perm("bridge.view_stuckpartition"):
        return None
    stuck = list(StuckPartition.objects.all()[:5])
    return Attention(
        "Partitions stuck (the bridge cannot move past a record)",
        StuckPartition.objects.count(),
        reverse("admin:bridge_stuckpartition_changelist"),
        ", ".join(str(row) for row in stuck),
    )


def _consumer_lag(request: HttpRequest) -> Attention | None:
    if not request.user.has_perm("bridge.view_stuckpartition"):
        return None
    from core import health

    try:
        lag = health.consumer_lag()
    except Exception:  # noqa: BLE001 - Redis down: the start page still renders, health says why
        return Attention("Consumer lag (records behind)", 0, "/health", "unknown: Redis unreachable")
    worst = sorted(lag.items(), key=lambda item: -item[1])[:3]
    return Attention(
        "Consumer lag (records behind)",
        sum(lag.values()),
        "/health",
        ", ".join(f"{partition}: {n}" for partition, n in worst if n),
    )


AttentionCheck = Callable[[HttpRequest], Attention | None]

# Each returns None when the user may not see that kind of thing. Apps add theirs with
# `register_attention` from their AppConfig.ready(): core imports no app.
ATTENTION_CHECKS: list[AttentionCheck] = [
    _dead_letters,
    _open_alerts,
    _outbox_backlog,
    _stuck_partitions,
    _consumer_lag,
]


def register_attention(check: AttentionCheck) -> None:
    """Add an app's item to the start page (once, however often its ready() runs)."""
    if check not in ATTENTION_CHECKS:
        ATTENTION_CHECKS.append(check)


def attention_for(request: HttpRequest) -> list[Attention]:
    return [item for check in ATTENTION_CHECKS if (item := check(request)) is not None]


class PlatformAdminSite(admin.AdminSite):
    site_header = "kafka-platform"
    site_title = "kafka-platform admin"
    index_title = "Operations"
    index_template = "admin/platform_index.html"

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        extra_context = {**(extra_context or {}), "attention": attention_for(request)}
        return super().index(request, extra_context)
