"""The chain's head is anchored too: a checkpoint every so many records as well as every minute,
and deleting the newest checkpoint together with the records it covered (as an attacker with the
database's keys and the triggers disabled would) is caught, by the database's own outbox copy
of it and, when that was deleted as well, by the scheduled verification reading audit.checkpoints."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from kafka.admin import NewTopic

from audit import checkpoint_topic, services, tasks
from audit.models import AuditEvent, ChainCheckpoint, ComplianceAlert, ComplianceRuleName
from bridge import topics
from bridge.clients import new_admin
from tests.audit.support import token_client
from tests.audit.test_anchoring import CHECKPOINTS, as_superuser, clear_log, record, verify
from tests.conftest import BEAT_MAX_INTERVAL_S, Stack
from tests.support.waiting import wait_until


def broken_alerts(reason: str) -> list[ComplianceAlert]:
    return list(
        ComplianceAlert.objects.filter(rule=ComplianceRuleName.AUDIT_CHAIN_BROKEN, details__reason=reason)
    )


def two_checkpoints() -> tuple[Any, Any]:
    record(3)
    first = services.audit_checkpoint_create()
    record(3)
    second = services.audit_checkpoint_create()
    assert first is not None and second is not None
    return first, second


def delete_newest_checkpoint_and_its_records(first: Any, second: Any, *, outbox_too: bool) -> None:
    """The attack: the newest checkpoint and every record after the one before it are gone, and
    the chain left behind is consistent in itself."""
    statements: list[tuple[str, list[object]]] = [
        ("DELETE FROM audit_chaincheckpoint WHERE number = %s", [second.number]),
        ("DELETE FROM audit_auditevent WHERE sequence > %s", [first.sequence]),
    ]
    if outbox_too:
        statements.append(
            (
                "DELETE FROM bridge_outboxevent WHERE topic = %s AND key = %s",
                [CHECKPOINTS, str(second.number)],
            )
        )
    as_superuser(*statements)


@pytest.mark.django_db
def test_the_newest_checkpoint_deleted_with_its_records_is_caught_by_the_database(auditor: Any) -> None:
    clear_log()
    first, second = two_checkpoints()
    api = token_client(auditor)
    assert verify()[0] == 0 and api.get("/api/v1/audit/verify/").json()["intact"] is True

    delete_newest_checkpoint_and_its_records(first, second, outbox_too=False)

    code, out = verify()
    assert code == 1, out
    assert "(checkpoint_deleted)" in out and f"checkpoint #{second.number} " in out
    body = api.get("/api/v1/audit/verify/").json()
    assert body["intact"] is False and body["firstBadRecord"]["reason"] == "checkpoint_deleted"
    assert body["firstBadRecord"]["sequence"] == second.sequence
    # Nor does the signer number a new checkpoint over the gap: it raises the alert instead.
    record(2)
    assert services.audit_checkpoint_create() is None
    assert len(broken_alerts("checkpoint_deleted")) == 1


def requests_on_commit() -> list[Any]:
    """The checkpoint requests the test's transaction would send when it commits."""
    return [cb for _, cb, _ in connection.run_on_commit if cb is services._request_checkpoint]


@pytest.mark.django_db
@override_settings(AUDIT_CHECKPOINT_EVERY_RECORDS=5)
def test_a_checkpoint_is_requested_every_so_many_records(monkeypatch: pytest.MonkeyPatch) -> None:
    clear_log()
    record(3)  # #1..#3: no multiple of 5 reached
    assert requests_on_commit() == []
    record(4)  # #4..#7 passes #5
    [request] = requests_on_commit()
    sent: list[str] = []
    monkeypatch.setattr(services.current_app, "send_task", lambda name, **kw: sent.append(name))
    request()
    assert sent == [services.CHECKPOINT_TASK]


def recreate_checkpoint_topic() -> None:
    admin = new_admin()
    try:
        if CHECKPOINTS in admin.list_topics():
            admin.delete_topics([CHECKPOINTS])
            wait_until(lambda: CHECKPOINTS not in admin.list_topics(), what="the topic deleted")
        topic = topics.AUDIT_CHECKPOINTS
        admin.create_topics([NewTopic(CHECKPOINTS, topic.partitions, 1, topic_configs=topic.config())])
    finally:
        admin.close()


@pytest.mark.django_db(transaction=True)
def test_the_scheduled_verification_compares_the_checkpoints_with_kafka(beat_not_signing: Stack) -> None:
    # Neither beat's minute nor a record the worker appends for an earlier test may sign our
    # head between two of our checkpoints (seen in a full run: the second checkpoint was None).
    # A log and a topic that agree from the start: earlier tests' checkpoints are gone from both.
    with transaction.atomic():
        clear_log()
    recreate_checkpoint_topic()
    first, second = two_checkpoints()
    wait_until(
        lambda: {c.sequence for c in checkpoint_topic.read_published()[0]} >= {first.number, second.number},
        what="both checkpoints on audit.checkpoints",
    )

    untouched = tasks.verify_chain()
    assert untouched["intact"] is True, untouched
    assert untouched["kafka"]["agrees"] is True and untouched["kafka"]["published"] >= 2
    assert not ComplianceAlert.objects.filter(rule=ComplianceRuleName.AUDIT_CHAIN_BROKEN).exists()

    # A thorough attacker removes the outbox copy as well: the database alone now verifies.
    delete_newest_checkpoint_and_its_records(first, second, outbox_too=True)
    assert not AuditEvent.objects.filter(sequence__gt=first.sequence, sequence__lte=second.sequence).exists()
    assert verify()[0] == 0

    tampered = tasks.verify_chain()
    assert tampered["intact"] is False, tampered
    bad = tampered["firstBadRecord"]
    assert bad["reason"] == "kafka_mismatch"
    assert f"checkpoint #{second.number} is on {CHECKPOINTS} but not in the database" in bad["message"]
    [alert] = broken_alerts("kafka_mismatch")
    assert alert.severity == "critical" and alert.details["sequence"] == second.sequence


@pytest.fixture
def beat_not_signing(live: Stack) -> Iterator[Stack]:
    """Beat's minute taken out of the way: any checkpoint then was asked for by an append."""
    since = timezone.now()
    beat_job = PeriodicTask.objects.filter(task=services.CHECKPOINT_TASK)
    beat_job.update(enabled=False)
    PeriodicTasks.update_changed()
    # Beat rereads its schedule every BEAT_MAX_INTERVAL_S: after that it sends no checkpoint job.
    # One it sent before has run once nothing is left queued or held by the worker.
    time.sleep(float(BEAT_MAX_INTERVAL_S) + 0.5)
    live.wait_until_drained(since)
    try:
        yield live
    finally:
        beat_job.update(enabled=True)
        PeriodicTasks.update_changed()


@pytest.mark.django_db(transaction=True)
@override_settings(AUDIT_CHECKPOINT_EVERY_RECORDS=5)
def test_the_append_that_passes_a_multiple_has_the_real_worker_sign_at_once(
    beat_not_signing: Stack,
) -> None:
    with transaction.atomic():
        clear_log()
    since = timezone.now()
    record(3)  # #1..#3: no request
    # A request would have been queued by the commit, in this process: once nothing is left queued
    # or held by the worker, the checkpoint it asked for would be signed.
    beat_not_signing.wait_until_drained(since)
    assert not ChainCheckpoint.objects.exists()
    rows = record(3)  # #4..#6 passes #5: its commit asks the worker for a checkpoint
    signed = wait_until(
        lambda: ChainCheckpoint.objects.filter(sequence__gte=rows[-1].sequence).first(),
        timeout_s=30,
        what="a checkpoint signed by the worker on request",
    )
    assert signed.record_hash == rows[-1].hash
