"""The bridge's health checks, registered with core.health from BridgeConfig.ready(): Kafka as a
dependency, and in /health the outbox's backlog and the stuck partitions (thresholds: core.health)."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Min
from django.utils import timezone
from kafka import KafkaAdminClient

from bridge.clients import client_config
from bridge.models import OutboxEvent, StuckPartition
from core import health
from core.probes import DEGRADED, DOWN, OK

Result = health.Result


def _check_kafka() -> Result:
    admin = KafkaAdminClient(**client_config(), request_timeout_ms=3000, bootstrap_timeout_ms=3000)
    admin.close()
    return {"status": OK}


def _check_outbox() -> Result:
    oldest = OutboxEvent.objects.filter(sent_at__isnull=True).aggregate(oldest=Min("created_at"))["oldest"]
    if oldest is None:
        return {"status": OK, "oldest_unsent_s": None}
    age = (timezone.now() - oldest).total_seconds()
    status = OK
    if age > settings.HEALTH_OUTBOX_DOWN_S:
        status = DOWN
    elif age > settings.HEALTH_OUTBOX_DEGRADED_S:
        status = DEGRADED
    result: Result = {
        "status": status,
        "oldest_unsent_s": round(age, 1),
        "degraded_after_s": settings.HEALTH_OUTBOX_DEGRADED_S,
        "down_after_s": settings.HEALTH_OUTBOX_DOWN_S,
    }
    if status != OK:
        result["error"] = f"the oldest unsent outbox event is {age:.0f}s old: events are not reaching Kafka"
    return result


def _check_stuck_partitions() -> Result:
    rows = list(StuckPartition.objects.order_by("topic", "partition"))
    if not rows:
        return {"status": OK, "stuck": []}
    stuck = [
        {
            "topic": row.topic,
            "partition": row.partition,
            "offset": row.offset,
            "group": row.group,
            "since": row.stuck_since.isoformat(),
            "error": row.error,
            "skip_requested_by": row.skip_requested_by or None,
        }
        for row in rows
    ]
    names = ", ".join(f"{row.topic}@{row.partition} (offset {row.offset})" for row in rows)
    return {"status": DOWN, "error": f"partitions stuck: {names}", "stuck": stuck}


def register() -> None:
    health.register_dependency("kafka", _check_kafka)
    health.register_platform_check("outbox", _check_outbox)
    health.register_platform_check("stuck_partitions", _check_stuck_partitions)
