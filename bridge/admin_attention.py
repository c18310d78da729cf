"""The bridge's items on the admin start page (core.admin_site): dead letters, the outbox backlog,
stuck partitions and consumer lag. Registered from BridgeConfig.ready()."""

from __future__ import annotations

from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.timesince import timesince

from bridge.models import DeadLetter, OutboxEvent, StuckPartition
from core import health
from core.admin_site import Attention, register_attention


def _dead_letters(request: HttpRequest) -> Attention | None:
    if not request.user.has_perm("bridge.view_deadletter"):
        return None
    pending = DeadLetter.objects.filter(replayed_at__isnull=True)
    return Attention(
        "Dead letters not replayed",
        pending.count(),
        reverse("admin:bridge_deadletter_changelist") + "?replayed_at__isnull=True",
    )


def _outbox_backlog(request: HttpRequest) -> Attention | None:
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


def register() -> None:
    register_attention(_dead_letters, place=10)
    register_attention(_outbox_backlog, place=30)
    register_attention(_stuck_partitions, place=40)
    register_attention(_consumer_lag, place=50)
