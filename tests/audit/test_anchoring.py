"""Anchoring the audit chain: checkpoints chained and signed with AUDIT_CHECKPOINT_KEY, a sequence
without gaps, a maximum age, and the copy on audit.checkpoints. Each test is an attack by someone
who can write to the database (triggers disabled, as a superuser) and `audit_verify` catching it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from kafka.admin import NewTopic

from audit import chain, services
from audit.events import CheckpointSigned
from audit.models import AuditEvent, ChainCheckpoint
from bridge import topics
from bridge.clients import new_admin
from bridge.models import OutboxEvent
from tests.audit.support import audit_envelope, audit_verify
from tests.conftest import Stack
from tests.support.kafka import Collector, subject_is
from tests.support.waiting import wait_until

CHECKPOINTS = topics.AUDIT_CHECKPOINTS.name
# A maximum age the tests can outwait: records recorded before the sleep are older than it.
SHORT_MAX_AGE_S = 1


def clear_log() -> None:
    """Start from an empty log and no checkpoints, inside the test's transaction (rolled back)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [services.CHAIN_LOCK])
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM audit_chaincheckpoint")
        # And the checkpoints' outbox copies, which would otherwise name checkpoints now missing.
        cursor.execute("DELETE FROM bridge_outboxevent WHERE topic = 'audit.checkpoints'")
        cursor.execute("DELETE FROM audit_auditevent")
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def record(n: int) -> list[AuditEvent]:
    envelopes = [audit_envelope("payment.captured") for _ in range(n)]
    services.audit_events_record(events=envelopes)
    return list(AuditEvent.objects.filter(event_id__in=[e.id for e in envelopes]).order_by("sequence"))


def as_superuser(*statements: tuple[str, list[object]]) -> None:
    """Run `statements` with every trigger of the audit tables disabled, as a superuser can."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER ALL")
        cursor.execute("ALTER TABLE audit_chaincheckpoint DISABLE TRIGGER ALL")
        try:
            for sql, params in statements:
                cursor.execute(sql, params)
        finally:
            cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER ALL")
            cursor.execute("ALTER TABLE audit_chaincheckpoint ENABLE TRIGGER ALL")


def rewrite_from(row: AuditEvent, *, actor: str) -> None:
    """Change `row`'s actor and recompute every hash from it on, with the chain's own algorithm."""
    prev = row.prev_hash
    statements: list[tuple[str, list[object]]] = []
    for later in AuditEvent.objects.filter(sequence__gte=row.sequence).order_by("sequence"):
        if later.pk == row.pk:
            later.actor = actor
        new_hash = chain.link_hash(prev, later.content())
        statements.append(
            (
                "UPDATE audit_auditevent SET actor = %s, prev_hash = %s, hash = %s WHERE id = %s",
                [later.actor, prev, new_hash, later.pk],
            )
        )
        prev = new_hash
    as_superuser(*statements)


def verify(*args: str) -> tuple[int, str]:
    """`manage.py audit_verify` in this process (it sees the test's uncommitted rows)."""
    out = io.StringIO()
    try:
        call_command("audit_verify", *args, stdout=out)
    except SystemExit as exc:
        return int(exc.code or 0), out.getvalue()
    return 0, out.getvalue()


# --- the database alone ----------------------------------------------------------------------------


@pytest.mark.django_db
@override_settings(AUDIT_CHECKPOINT_MAX_AGE_S=SHORT_MAX_AGE_S)
def test_a_record_rewritten_and_rehashed_with_the_checkpoints_deleted_is_caught() -> None:
    clear_log()
    rows = record(4)
    assert services.audit_checkpoint_create() is not None
    assert verify()[0] == 0
    time.sleep(SHORT_MAX_AGE_S + 0.2)

    rewrite_from(rows[1], actor="mallory")
    as_superuser(("DELETE FROM audit_chaincheckpoint", []))

    code, out = verify()
    assert code == 1, out
    assert f"First bad record: #{rows[0].sequence} (no_checkpoint)" in out
    # Nor does the platform sign a fresh chain of checkpoints over the rewritten records.
    assert services.audit_checkpoint_create() is None
    assert not ChainCheckpoint.objects.exists()


@pytest.mark.django_db
def test_checkpoints_rewritten_without_the_key_are_caught() -> None:
    clear_log()
    rows = record(3)
    assert services.audit_checkpoint_create() is not None
    rewrite_from(rows[1], actor="mallory")
    # Re-sign the checkpoint over the new head with a guess at the key (the secret key, say).
    head = AuditEvent.objects.get(sequence=rows[2].sequence)
    checkpoint = ChainCheckpoint.objects.get()
    forged = chain.sign_checkpoint(
        "django-insecure-dev-only-kafka-platform",
        number=checkpoint.number,
        kind=checkpoint.kind,
        sequence=checkpoint.sequence,
        record_hash=head.hash,
        signed_at=checkpoint.signed_at,
        prev_signature=checkpoint.prev_signature,
    )
    as_superuser(
        (
            "UPDATE audit_chaincheckpoint SET record_hash = %s, signature = %s WHERE id = %s",
            [head.hash, forged, checkpoint.pk],
        )
    )
    code, out = verify()
    assert code == 1, out
    assert "(bad_signature)" in out and "not made with AUDIT_CHECKPOINT_KEY" in out


@pytest.mark.django_db
def test_a_gap_in_the_checkpoint_sequence_is_caught() -> None:
    clear_log()
    for _ in range(3):
        record(1)
        assert services.audit_checkpoint_create() is not None
    numbers = list(ChainCheckpoint.objects.order_by("number").values_list("number", flat=True))
    assert numbers == [1, 2, 3]
    assert verify()[0] == 0

    as_superuser(("DELETE FROM audit_chaincheckpoint WHERE number = 2", []))

    code, out = verify()
    assert code == 1, out
    assert "(checkpoint_gap)" in out and "checkpoints #2..#2 are missing" in out


@pytest.mark.django_db
def test_checkpoints_relinked_after_one_is_removed_are_caught() -> None:
    clear_log()
    for _ in range(3):
        record(1)
        services.audit_checkpoint_create()
    # Close the gap by renumbering: the third still signs the removed second's signature.
    as_superuser(
        ("DELETE FROM audit_chaincheckpoint WHERE number = 2", []),
        ("UPDATE audit_chaincheckpoint SET number = 2 WHERE number = 3", []),
    )
    code, out = verify()
    assert code == 1, out
    assert "(checkpoint_unlinked)" in out


@pytest.mark.django_db
def test_records_left_unsigned_past_the_maximum_age_are_caught() -> None:
    clear_log()
    record(2)
    assert services.audit_checkpoint_create() is not None
    newer = record(2)
    # Within the maximum age the chain is intact: beat signs the new records within a minute.
    assert verify()[0] == 0

    with override_settings(AUDIT_CHECKPOINT_MAX_AGE_S=SHORT_MAX_AGE_S):
        time.sleep(SHORT_MAX_AGE_S + 0.2)
        code, out = verify()
        assert code == 1, out
        assert f"First bad record: #{newer[0].sequence} (stale_checkpoint)" in out
        # A late checkpoint continues the chain and heals it.
        assert services.audit_checkpoint_create() is not None
        assert verify()[0] == 0


@pytest.mark.django_db
def test_a_checkpoint_signed_with_a_wrong_key_is_caught() -> None:
    clear_log()
    record(2)
    with override_settings(AUDIT_CHECKPOINT_KEY="not-the-key"):
        assert services.audit_checkpoint_create() is not None
    code, out = verify()
    assert code == 1, out
    assert "(bad_signature)" in out


@pytest.mark.django_db
def test_the_verify_endpoint_applies_the_same_checks(auditor: object) -> None:
    from tests.audit.support import token_client

    clear_log()
    record(2)
    services.audit_checkpoint_create()
    api = token_client(auditor)  # type: ignore[arg-type]
    assert api.get("/api/v1/audit/verify/").json()["intact"] is True
    as_superuser(("DELETE FROM audit_chaincheckpoint", []))
    with override_settings(AUDIT_CHECKPOINT_MAX_AGE_S=0):
        body = api.get("/api/v1/audit/verify/").json()
    assert body["intact"] is False and body["firstBadRecord"]["reason"] == "no_checkpoint"


# --- the copy on Kafka -----------------------------------------------------------------------------


@pytest.fixture
def fresh_checkpoint_topic(live: Stack) -> Iterator[Stack]:
    """audit.checkpoints emptied: earlier tests' checkpoints (their database flushed) are gone, as
    on a new platform."""
    admin = new_admin()
    try:
        if CHECKPOINTS in admin.list_topics():
            admin.delete_topics([CHECKPOINTS])
            wait_until(lambda: CHECKPOINTS not in admin.list_topics(), what="the topic deleted")
        topic = topics.AUDIT_CHECKPOINTS
        admin.create_topics([NewTopic(CHECKPOINTS, topic.partitions, 1, topic_configs=topic.config())])
    finally:
        admin.close()
    yield live


@pytest.mark.django_db(transaction=True)
def test_checkpoints_are_published_to_audit_checkpoints(live: Stack, collector: Collector) -> None:
    rows = record(3)
    checkpoint = services.audit_checkpoint_create()
    assert checkpoint is not None
    [published] = collector.wait_for(CHECKPOINTS, subject_is(str(checkpoint.number)))
    event = published.json()
    assert event["type"] == CHECKPOINTS and event["subject"] == str(checkpoint.number)
    data = CheckpointSigned.model_validate(event["data"])
    assert (data.recordSequence, data.recordHash) == (rows[-1].sequence, rows[-1].hash)
    assert (data.signature, data.prevSignature) == (checkpoint.signature, checkpoint.prev_signature)


@pytest.mark.django_db(transaction=True)
def test_audit_verify_kafka_compares_the_database_with_the_topic(fresh_checkpoint_topic: Stack) -> None:
    live = fresh_checkpoint_topic
    rows = record(3)
    first = services.audit_checkpoint_create()
    record(1)
    second = services.audit_checkpoint_create()
    assert first is not None and second is not None

    def published() -> bool:
        result = audit_verify(live.env, "--kafka")
        return result.returncode == 0 and "2 on the topic" in result.stdout

    # The relay's mark first (a query), then the command (a process of 1-2 s a try) once.
    wait_until(
        lambda: not OutboxEvent.objects.filter(topic=CHECKPOINTS, sent_at__isnull=True).exists(),
        what="both checkpoints published by the relay",
    )
    wait_until(published, what="audit_verify --kafka agreeing once both checkpoints are published")

    # The rewrite the database alone cannot show: records rewritten and rehashed while still
    # fresh, the checkpoints and their outbox copies deleted, and a new chain of checkpoints
    # signed by the platform itself.
    rewrite_from(rows[1], actor="mallory")
    as_superuser(
        ("DELETE FROM audit_chaincheckpoint", []),
        ("DELETE FROM bridge_outboxevent WHERE topic = %s", [CHECKPOINTS]),
    )
    assert services.audit_checkpoint_create() is not None
    assert audit_verify(live.env).returncode == 0

    result = audit_verify(live.env, "--kafka")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"kafka {CHECKPOINTS}: DIFFERS" in result.stdout
    assert "checkpoint #1 differs" in result.stdout or "different checkpoints #1" in result.stdout
    assert "checkpoint #2 is on audit.checkpoints but not in the database" in result.stdout


def test_the_bridge_does_not_take_the_checkpoints_for_audit_input() -> None:
    """A checkpoint logged as an audit record would move the head, and need a checkpoint itself."""
    assert not topics.is_audit_topic(CHECKPOINTS)
    assert topics.lookup(CHECKPOINTS) is topics.AUDIT_CHECKPOINTS
