"""Web /health tells the truth about the platform: an outbox that does not drain is degraded, then
down; a stuck partition is down and named; the running stack's bridges and workers are ok."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from bridge import topics
from bridge.models import OutboxEvent, StuckPartition
from tests.conftest import Stack
from tests.support.waiting import wait_until


def checks_of(client: Client) -> tuple[int, str, dict[str, dict[str, object]]]:
    response = client.get("/health")
    body = response.json()
    return response.status_code, body["status"], body["checks"]


# Rows written in the test's own transaction: invisible to the stack's relay (which would publish
# them), visible to /health served by the test client on the same connection.
@pytest.mark.django_db
def test_health_is_degraded_for_an_old_unsent_outbox_row_and_down_for_a_stuck_partition(
    stack: Stack, client: Client
) -> None:
    stack.ensure_running()
    # The stack's bridge and worker publish heartbeats: the platform is ok to begin with.
    wait_until(lambda: checks_of(client)[1] == "ok", timeout_s=60, what="/health ok with the stack running")
    status, overall, checks = checks_of(client)
    assert status == 200 and checks["bridges"]["status"] == "ok" and checks["workers"]["status"] == "ok"
    assert checks["outbox"]["status"] == "ok" and checks["stuck_partitions"]["status"] == "ok"

    row = OutboxEvent.objects.create(
        topic=topics.PAYMENT_PROCESSED.name,
        key="p-stale",
        event_type=topics.PAYMENT_PROCESSED.name,
        value=b"{}",
    )
    OutboxEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(seconds=120))
    status, overall, checks = checks_of(client)
    assert (status, overall) == (200, "degraded")
    assert checks["outbox"]["status"] == "degraded" and checks["outbox"]["oldest_unsent_s"] >= 120

    OutboxEvent.objects.filter(pk=row.pk).update(created_at=timezone.now() - timedelta(hours=1))
    status, overall, checks = checks_of(client)
    assert (status, overall) == (503, "down") and checks["outbox"]["status"] == "down"
    OutboxEvent.objects.filter(pk=row.pk).update(sent_at=timezone.now())
    assert checks_of(client)[2]["outbox"]["status"] == "ok"

    StuckPartition.objects.create(
        group="kafka-platform-bridge",
        topic=topics.PAYMENT_REQUESTED.name,
        partition=7,
        offset=42,
        error="OperationalError: Protocol error: invalid bulk length",
        stuck_since=timezone.now() - timedelta(minutes=2),
        reported_at=timezone.now(),
        reported_by="bridge-host:1",
    )
    status, overall, checks = checks_of(client)
    assert (status, overall) == (503, "down")
    assert checks["stuck_partitions"]["status"] == "down"
    assert "payments.payment-requested@7 (offset 42)" in str(checks["stuck_partitions"]["error"])
    assert client.get("/ready").status_code == 200  # the API itself still serves
