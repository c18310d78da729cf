"""The audit log over the real stack: a payment's records arrive through Kafka, the bridge and
the worker into one intact chain; `audit_verify` and the verification job catch tampering."""

from __future__ import annotations

import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection
from kafka.admin import NewTopic

from audit import services
from audit.models import AuditEvent, ChainCheckpoint, CheckpointKind
from bridge import topics
from bridge.clients import new_admin
from tests.audit.support import audit_verify
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is
from tests.support.processes import celery
from tests.support.signing import sign
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

REQUESTED = topics.PAYMENT_REQUESTED.name


def pay(live: Stack, collector: Collector, **overrides: object) -> list[AuditEvent]:
    """A payment through the stack; its three audit records once stored."""
    data = payment_request(**overrides)
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])
    collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(data["paymentId"]))

    def stored() -> list[AuditEvent] | None:
        rows = list(AuditEvent.objects.filter(subject_id=data["paymentId"]).order_by("sequence"))
        return rows if len(rows) == 3 else None

    return wait_until(stored, what="three audit records of the payment")


def with_triggers_disabled(sql: str, params: list[object]) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_append_only")
        try:
            cursor.execute(sql, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_append_only")


def run_task(live: Stack, name: str) -> None:
    """Send a beat job's task to the real worker, as celery beat would."""
    subprocess.run(celery("call", name), env=live.env, check=True, capture_output=True, timeout=60)


def test_a_payment_flow_leaves_an_intact_chain_that_audit_verify_confirms(
    live: Stack, collector: Collector
) -> None:
    rows = pay(live, collector)
    # The chain's order is the order records were appended: two worker processes may store a
    # payment's records in another order than the payment's transitions.
    assert {r.action for r in rows} == {"payment.requested", "payment.processing", "payment.captured"}
    assert all(r.topic == topics.AUDIT_PAYMENT_EVENTS.name and r.offset is not None for r in rows)
    assert all(r.partition is not None for r in rows)
    assert rows[2].sequence > rows[1].sequence > rows[0].sequence

    result = audit_verify(live.env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "database: intact" in result.stdout


def test_a_row_altered_with_the_trigger_disabled_makes_audit_verify_exit_1_naming_it(
    live: Stack, collector: Collector
) -> None:
    rows = pay(live, collector)
    altered = rows[1]
    with_triggers_disabled(
        "UPDATE audit_auditevent SET data = jsonb_set(data, '{details,toStatus}', %s) WHERE id = %s",
        ['"captured"', altered.pk],
    )
    result = audit_verify(live.env)
    assert result.returncode == 1, result.stdout
    assert "TAMPERED" in result.stdout
    assert f"First bad record: #{altered.sequence} (content_altered)" in result.stdout
    assert altered.event_id in result.stdout


def test_a_truncated_tail_is_detected_after_the_checkpoint_job_ran(live: Stack, collector: Collector) -> None:
    rows = pay(live, collector)
    head = AuditEvent.objects.order_by("-sequence").first()
    assert head is not None
    run_task(live, "audit.checkpoint_chain")
    wait_until(
        lambda: ChainCheckpoint.objects.filter(
            kind=CheckpointKind.CHECKPOINT, sequence__gte=head.sequence
        ).exists(),
        what="a checkpoint signed by the worker",
    )
    with_triggers_disabled("DELETE FROM audit_auditevent WHERE sequence >= %s", [rows[1].sequence])
    result = audit_verify(live.env)
    assert result.returncode == 1, result.stdout
    assert f"First bad record: #{rows[1].sequence} (truncated)" in result.stdout


def test_the_verification_job_raises_audit_chain_broken(live: Stack, collector: Collector) -> None:
    rows = pay(live, collector)
    with_triggers_disabled("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s", [rows[0].pk])
    run_task(live, "audit.verify_chain")
    [record] = collector.wait_for(
        topics.AUDIT_COMPLIANCE_ALERTS.name, lambda r: r.json()["data"]["rule"] == "audit_chain_broken"
    )
    data = record.json()["data"]
    assert data["severity"] == "critical" and data["subject"] == f"audit_event:{rows[0].sequence}"
    assert data["details"]["eventId"] == rows[0].event_id and data["details"]["reason"] == "content_altered"
    # The alert's own audit record arrives last; the test ends with the pipeline drained.
    wait_until(
        lambda: AuditEvent.objects.filter(
            subject_id=data["alertId"], action="compliance_alert.raised"
        ).exists(),
        what="the alert's audit record",
    )


def test_after_retention_audit_verify_checks_the_archive_and_the_chain_that_continues_it(
    live: Stack, collector: Collector, tmp_path: Path
) -> None:
    rows = pay(live, collector)
    result = services.audit_retention_apply(now=datetime(2100, 1, 1, tzinfo=UTC), archive_dir=tmp_path)
    assert result.archived >= 2 and not AuditEvent.objects.filter(pk=rows[0].pk).exists()
    pay(live, collector)  # the chain goes on from the retention anchor

    verified = audit_verify(live.env, "--archive-dir", str(tmp_path))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "database: intact" in verified.stdout and f"archive {tmp_path}: intact" in verified.stdout
    assert f"continues from the retention anchor at #{result.anchor_sequence}" in verified.stdout
    wait_until(
        lambda: AuditEvent.objects.filter(action="audit_log.archived").count() == len(result.segments),
        what="the archiving's own audit records",
    )


@pytest.mark.slow
def test_a_new_audit_topic_is_consumed_without_restarting_the_bridge(live: Stack) -> None:
    name = f"audit.fx-{uuid.uuid4().hex[:8]}-events"
    admin = new_admin()
    try:
        admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    finally:
        admin.close()
    data = {"action": "fx.rate_published", "subjectType": "rate", "subjectId": "EURUSD", "actor": "system:fx"}
    # The bridge joins the topic at its next metadata refresh (BRIDGE_TOPIC_REFRESH_S, 10 s) and
    # reads it from the start.
    value = structured(name, data)  # as a domain of the platform publishes it: signed
    produce(live.bootstrap, name, value, key="EURUSD", headers=sign(name, value))
    stored = wait_until(
        lambda: AuditEvent.objects.filter(topic=name).first(), timeout_s=60, what="the record"
    )
    assert (stored.action, stored.source, stored.partition, stored.offset) == (
        "fx.rate_published",
        "/tests/client",
        0,
        0,
    )
