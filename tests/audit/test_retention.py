"""Retention: expired records are archived (gzip JSONL + signed manifest) before they are purged,
and the chain stays verifiable across the purge, in the database and through the archive."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit import archive, chain, services
from audit.models import AuditEvent, ChainCheckpoint, CheckpointKind, ComplianceAlert
from audit.selectors import verify_archive, verify_chain
from bridge import topics
from bridge.models import OutboxEvent
from tests.audit.support import audit_envelope

NOW = datetime(2033, 1, 1, tzinfo=UTC)
OLD = NOW - timedelta(days=8 * 365)
RECENT = NOW - timedelta(days=30)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_log() -> None:
    """Each test starts from an empty log it alone appends to: it holds the chain lock (a live
    worker's appends wait) and, inside its rolled-back transaction, clears what others left."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [services.CHAIN_LOCK])
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("DELETE FROM audit_chaincheckpoint")
        # And the checkpoints' outbox copies, which would otherwise name checkpoints now missing.
        cursor.execute("DELETE FROM bridge_outboxevent WHERE topic = 'audit.checkpoints'")
        cursor.execute("DELETE FROM audit_auditevent")
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")


def record(count: int, at: datetime) -> list[AuditEvent]:
    envelopes = [
        audit_envelope("payment.captured", occurred_at=at + timedelta(seconds=i)) for i in range(count)
    ]
    for envelope in envelopes:
        services.audit_event_record(event=envelope)
    return list(AuditEvent.objects.filter(event_id__in=[e.id for e in envelopes]).order_by("sequence"))


def test_expired_records_are_archived_then_purged_and_the_chain_still_verifies(tmp_path: Path) -> None:
    old = record(7, OLD)
    recent = record(3, RECENT)
    assert services.audit_checkpoint_create() is not None

    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path, batch_size=3)

    assert result.archived == 7 and result.stopped is None
    assert result.segments == [
        "audit-000000000001-000000000003.jsonl.gz",
        "audit-000000000004-000000000006.jsonl.gz",
        "audit-000000000007-000000000007.jsonl.gz",
    ]
    assert not AuditEvent.objects.filter(pk__in=[r.pk for r in old]).exists()
    assert AuditEvent.objects.count() == 3
    anchor = ChainCheckpoint.objects.filter(kind=CheckpointKind.ANCHOR).latest("sequence")
    assert (anchor.sequence, anchor.record_hash, anchor.archive) == (7, old[-1].hash, result.segments[-1])

    # Each segment: the records' documents in order, and a manifest with the file's SHA-256.
    segment = archive.segments(tmp_path)[0]
    lines = gzip.decompress(segment.file.read_bytes()).splitlines()
    assert [json.loads(line)["eventId"] for line in lines] == [r.event_id for r in old[:3]]
    manifest = json.loads(segment.manifest.read_text())
    assert manifest["sha256"] == archive.file_sha256(segment.file) and manifest["records"] == 3
    assert manifest["prevHash"] == chain.GENESIS_HASH and manifest["lastHash"] == old[2].hash

    report = verify_chain()
    assert report.intact and report.anchor_sequence == 7
    assert (report.first_sequence, report.last_sequence) == (recent[0].sequence, recent[-1].sequence)
    archived = verify_archive(tmp_path)
    assert archived.intact and archived.archived_records == 7

    # Each purge is itself audited, and new records keep extending the same chain.
    audited = OutboxEvent.objects.filter(topic=topics.AUDIT_COMPLIANCE_EVENTS.name)
    assert sorted(audited.values_list("key", flat=True)) == result.segments
    [after] = record(1, NOW)
    assert after.prev_hash == recent[-1].hash and verify_chain().intact


def test_the_newest_record_stays_so_the_next_append_links_to_it(tmp_path: Path) -> None:
    old = record(3, OLD)
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 2
    assert list(AuditEvent.objects.values_list("pk", flat=True)) == [old[-1].pk]
    [first] = record(1, NOW)
    assert first.prev_hash == old[-1].hash
    assert verify_chain().intact and verify_archive(tmp_path).intact


def test_only_a_prefix_is_purged_so_the_chain_is_never_holed(tmp_path: Path) -> None:
    old = record(2, OLD)
    recent = record(1, RECENT)
    late_old = record(2, OLD)  # old events that arrived late, after a recent one
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 2
    remaining = set(AuditEvent.objects.values_list("pk", flat=True))
    assert remaining == {recent[0].pk, *(r.pk for r in late_old)}
    assert not remaining & {r.pk for r in old}
    assert verify_chain().intact


def test_nothing_is_archived_or_purged_from_a_tampered_chain(tmp_path: Path) -> None:
    old = record(4, OLD)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s", [old[1].pk])
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 0 and result.stopped is not None and "altered" in result.stopped
    assert AuditEvent.objects.count() == 4 and archive.segments(tmp_path) == []
    alert = ComplianceAlert.objects.get(rule="audit_chain_broken")
    assert alert.details["sequence"] == old[1].sequence


def test_an_altered_archive_file_is_detected(tmp_path: Path) -> None:
    record(4, OLD)
    services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    segment = archive.segments(tmp_path)[0]
    documents = list(archive.read_documents(segment.file))
    documents[1]["actor"] = "mallory"
    segment.file.write_bytes(gzip.compress(b"".join(chain.canonical_json(d) + b"\n" for d in documents)))
    report = verify_archive(tmp_path)
    assert report.broken is not None and report.broken.reason == "archive_altered"


def test_a_missing_archive_segment_is_detected(tmp_path: Path) -> None:
    record(7, OLD)
    services.audit_retention_apply(now=NOW, archive_dir=tmp_path, batch_size=3)
    first = archive.segments(tmp_path)[0]
    first.manifest.unlink()
    first.file.unlink()
    report = verify_archive(tmp_path)
    assert report.broken is not None and report.broken.reason == "missing_records"


def test_rerunning_after_a_crash_between_archive_and_purge_writes_the_same_file(tmp_path: Path) -> None:
    rows = record(3, OLD)
    record(1, RECENT)
    # A first run wrote the segment, then died before purging.
    written = archive.write_segment(tmp_path, [r.document() for r in rows], key=settings.AUDIT_CHECKPOINT_KEY)
    content, manifest = written.file.read_bytes(), written.manifest.read_bytes()
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 3 and len(archive.segments(tmp_path)) == 1
    assert written.file.read_bytes() == content and written.manifest.read_bytes() == manifest
    assert verify_archive(tmp_path).intact


def test_a_record_below_the_anchor_is_reported(tmp_path: Path) -> None:
    record(3, OLD)
    services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET sequence = 1")
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")
    report = verify_chain()
    assert report.broken is not None and (report.broken.reason, report.broken.sequence) == ("below_anchor", 1)
