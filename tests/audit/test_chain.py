"""The hash chain on real PostgreSQL: appends, redelivery, concurrency, and each kind of tampering
the verifier must catch."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test import override_settings

from audit import chain, services
from audit.models import AuditEvent, ChainCheckpoint, CheckpointKind, ComplianceAlert
from audit.selectors import verify_chain
from bridge.models import OutboxEvent
from tests.audit.support import audit_envelope


def record(n: int = 1, **kwargs: object) -> list[AuditEvent]:
    envelopes = [audit_envelope(**kwargs) for _ in range(n)]  # type: ignore[arg-type]
    for envelope in envelopes:
        assert services.audit_event_record(event=envelope)
    return list(AuditEvent.objects.filter(event_id__in=[e.id for e in envelopes]).order_by("sequence"))


def tamper(sql: str, params: list[object] | None = None) -> None:
    """Run `sql` with the append-only triggers off, as someone with the database's keys could."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(sql, params or [])
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


@pytest.mark.django_db
def test_records_are_numbered_and_linked_from_genesis() -> None:
    rows = record(3, action="payment.captured")
    first = rows[0].sequence
    assert [r.sequence for r in rows] == [first, first + 1, first + 2]
    assert AuditEvent.objects.order_by("sequence").first().prev_hash == chain.GENESIS_HASH  # type: ignore[union-attr]
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash
    assert rows[2].hash == chain.link_hash(rows[1].hash, rows[2].content())
    report = verify_chain()
    assert report.intact and report.records >= 3 and report.head_hash == rows[2].hash


@pytest.mark.django_db
def test_redelivered_event_is_stored_once_and_takes_no_sequence_number() -> None:
    envelope = audit_envelope(action="payment.captured")
    assert services.audit_event_record(event=envelope) is True
    assert services.audit_event_record(event=envelope) is False
    [after] = record(1, action="payment.captured")
    first = AuditEvent.objects.get(event_id=envelope.id)
    assert after.sequence == first.sequence + 1 and after.prev_hash == first.hash
    assert verify_chain().intact


@pytest.mark.django_db
def test_hash_survives_the_jsonb_round_trip_of_awkward_values() -> None:
    details = {
        "exponent": Decimal("1E+2"),
        "negativeZero": Decimal("-0.00"),
        "trailing": Decimal("1.50"),
        "tiny": Decimal("1.0E-7"),
        "big": 123456789012345678901234567890,
        "float": 0.1,
        "text": 'héllo \u2603 "quoted" \\ back',
        "nested": {"z": [1, {"b": True, "a": None}], "a": []},
    }
    [row] = record(1, action="payment.captured", details=details)
    stored = AuditEvent.objects.get(pk=row.pk)
    assert stored.data["details"]["trailing"] == Decimal("1.50")
    assert chain.link_hash(stored.prev_hash, stored.content()) == stored.hash
    assert verify_chain().intact


@pytest.mark.django_db(transaction=True)
def test_concurrent_appends_from_many_connections_form_one_unbroken_chain() -> None:
    errors: list[BaseException] = []

    def append(n: int) -> None:
        try:
            for _ in range(n):
                services.audit_event_record(event=audit_envelope(action="payment.captured"))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=append, args=(15,)) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    sequences = list(AuditEvent.objects.values_list("sequence", flat=True))
    assert len(sequences) >= 90 and sequences == list(range(sequences[0], sequences[0] + len(sequences)))
    assert verify_chain().intact


@pytest.mark.django_db
def test_altered_content_is_detected_at_that_record() -> None:
    rows = record(4, action="payment.captured")
    tamper(
        "UPDATE audit_auditevent SET data = jsonb_set(data, '{actor}', '\"mallory\"') WHERE sequence = %s",
        [rows[2].sequence],
    )
    report = verify_chain()
    assert not report.intact
    assert report.broken is not None
    assert (report.broken.reason, report.broken.sequence, report.broken.event_id) == (
        "content_altered",
        rows[2].sequence,
        rows[2].event_id,
    )


@pytest.mark.django_db
def test_a_record_removed_from_the_middle_is_detected() -> None:
    rows = record(4, action="payment.captured")
    tamper("DELETE FROM audit_auditevent WHERE sequence = %s", [rows[1].sequence])
    report = verify_chain()
    assert report.broken is not None and report.broken.reason == "missing_records"
    assert report.broken.sequence == rows[2].sequence


@pytest.mark.django_db
def test_a_rewritten_and_rehashed_chain_is_caught_by_the_signed_checkpoint() -> None:
    rows = record(3, action="payment.captured")
    assert services.audit_checkpoint_create() is not None
    # Alter the second record and recompute every hash from it on: the links alone look fine.
    prev = rows[0].hash
    for row in AuditEvent.objects.filter(sequence__gte=rows[1].sequence).order_by("sequence"):
        if row.sequence == rows[1].sequence:
            row.actor = "mallory"
        new_hash = chain.link_hash(prev, row.content())
        tamper(
            "UPDATE audit_auditevent SET actor = %s, prev_hash = %s, hash = %s WHERE id = %s",
            [row.actor, prev, new_hash, row.pk],
        )
        prev = new_hash
    report = verify_chain()
    assert report.broken is not None
    assert (report.broken.reason, report.broken.sequence) == ("checkpoint_mismatch", rows[2].sequence)


@pytest.mark.django_db
def test_truncated_tail_is_detected_from_the_last_checkpoint() -> None:
    rows = record(5, action="payment.captured")
    checkpoint = services.audit_checkpoint_create()
    assert checkpoint is not None and checkpoint.sequence == rows[4].sequence
    tamper("DELETE FROM audit_auditevent WHERE sequence > %s", [rows[2].sequence])
    report = verify_chain()
    assert report.broken is not None
    assert (report.broken.reason, report.broken.sequence) == ("truncated", rows[3].sequence)
    assert f"#{rows[3].sequence}..#{rows[4].sequence} were removed" in report.broken.message


@pytest.mark.django_db
def test_a_checkpoint_not_signed_with_the_key_is_detected() -> None:
    record(2, action="payment.captured")
    with override_settings(AUDIT_CHECKPOINT_KEY="not-the-key"):
        services.audit_checkpoint_create()
    report = verify_chain()
    assert report.broken is not None and report.broken.reason == "bad_signature"


@pytest.mark.django_db
def test_checkpoints_sign_only_a_new_head_and_never_a_broken_chain() -> None:
    earlier = record(2, action="payment.captured")
    first = services.audit_checkpoint_create()
    assert first is not None and first.sequence == earlier[1].sequence
    assert services.audit_checkpoint_create() is None  # nothing appended since
    rows = record(2, action="payment.captured")
    tamper("UPDATE audit_auditevent SET actor = 'mallory' WHERE sequence = %s", [rows[0].sequence])
    assert services.audit_checkpoint_create() is None
    assert ChainCheckpoint.objects.filter(kind=CheckpointKind.CHECKPOINT).latest("id") == first
    alert = ComplianceAlert.objects.get(rule="audit_chain_broken")
    assert alert.severity == "critical" and alert.details["sequence"] == rows[0].sequence
    assert OutboxEvent.objects.filter(topic="audit.compliance-alerts", key=str(alert.alert_id)).exists()


@pytest.mark.django_db
def test_chain_check_raises_one_alert_per_break_however_often_it_runs() -> None:
    rows = record(3, action="payment.captured")
    tamper("UPDATE audit_auditevent SET actor = 'mallory' WHERE sequence = %s", [rows[1].sequence])
    assert not services.audit_chain_check().intact
    assert not services.audit_chain_check().intact
    assert ComplianceAlert.objects.filter(rule="audit_chain_broken").count() == 1


@pytest.mark.django_db
def test_a_batch_is_appended_as_one_by_one_appends_would_be() -> None:
    """The bridge's batches: one lock, one INSERT; redeliveries inside and outside the batch skipped."""
    [logged] = record(1, action="payment.captured")
    fresh = [audit_envelope(action="payment.captured") for _ in range(3)]
    batch = [fresh[0], audit_envelope(event_id=logged.event_id), fresh[1], fresh[0], fresh[2]]
    assert services.audit_events_record(events=batch) == 3
    rows = list(AuditEvent.objects.filter(event_id__in=[e.id for e in fresh]).order_by("sequence"))
    assert [r.event_id for r in rows] == [e.id for e in fresh]
    assert [r.sequence for r in rows] == [logged.sequence + 1, logged.sequence + 2, logged.sequence + 3]
    assert rows[0].prev_hash == logged.hash
    assert verify_chain().intact
    assert services.audit_events_record(events=fresh) == 0
