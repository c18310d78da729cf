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


def record(count: int, at: datetime) -> list[AuditEvent]:
    envelopes = [
        audit_envelope("payment.captured", occurred_at=at + timedelta(seconds=i)) for i in range(count)
    ]
    for envelope in envelopes:
        services.audit_event_record(event=envelope)
    return list(AuditEvent.objects.filter(event_id__in=[e.id for e in envelopes]).order_by("sequence"))


@pytest.mark.django_db(transaction=True)
def test_expired_records_are_archived_then_purged_and_the_chain_still_verifies(tmp_path: Path) -> None:
    old = record(7, OLD)
    recent = record(3, RECENT)
    assert services.audit_checkpoint_create() is not None

    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path, batch_size=3)

    assert result.archived == 7 and result.stopped is None
    assert result.segments == [
        f"{archive.segment_name(old[0].sequence, old[2].sequence)}.jsonl.gz",
        f"{archive.segment_name(old[3].sequence, old[5].sequence)}.jsonl.gz",
        f"{archive.segment_name(old[6].sequence, old[6].sequence)}.jsonl.gz",
    ]
    assert not AuditEvent.objects.filter(pk__in=[r.pk for r in old]).exists()
    assert AuditEvent.objects.filter(pk__in=[r.pk for r in recent]).count() == 3
    anchor = ChainCheckpoint.objects.filter(kind=CheckpointKind.ANCHOR).latest("sequence")
    assert (anchor.sequence, anchor.record_hash) == (old[-1].sequence, old[-1].hash)

    # Each segment: the records' documents in order, and a manifest with the file's SHA-256.
    segment = archive.segments(tmp_path)[0]
    lines = gzip.decompress(segment.file.read_bytes()).splitlines()
    assert [json.loads(line)["eventId"] for line in lines] == [r.event_id for r in old[:3]]
    manifest = json.loads(segment.manifest.read_text())
    assert manifest["sha256"] == archive.file_sha256(segment.file) and manifest["records"] == 3
    assert manifest["prevHash"] == old[0].prev_hash and manifest["lastHash"] == old[2].hash

    report = verify_chain()
    assert report.intact and report.anchor_sequence == old[-1].sequence
    assert report.first_sequence == recent[0].sequence and report.records >= 3
    archived = verify_archive(tmp_path)
    assert archived.intact and archived.archived_records == 7

    # The purge is itself audited, and new records keep extending the same chain.
    assert OutboxEvent.objects.filter(topic=topics.AUDIT_COMPLIANCE_EVENTS.name).count() == 3
    [after] = record(1, NOW)
    assert (
        verify_chain().intact and after.prev_hash == AuditEvent.objects.get(sequence=after.sequence - 1).hash
    )


@pytest.mark.django_db(transaction=True)
def test_purging_every_record_leaves_the_anchor_as_the_chain_head(tmp_path: Path) -> None:
    old = record(2, OLD)
    services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert not AuditEvent.objects.filter(sequence__lte=old[-1].sequence).exists()
    assert verify_chain().intact
    record(1, NOW)
    after_anchor = AuditEvent.objects.order_by("sequence").first()
    assert after_anchor is not None
    assert after_anchor.sequence == old[-1].sequence + 1 and after_anchor.prev_hash == old[-1].hash
    assert verify_chain().intact and verify_archive(tmp_path).intact


@pytest.mark.django_db(transaction=True)
def test_only_a_prefix_is_purged_so_the_chain_is_never_holed(tmp_path: Path) -> None:
    old = record(2, OLD)
    recent = record(1, RECENT)
    late_old = record(1, OLD)  # an old event that arrived late, after a recent one
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 2
    assert set(AuditEvent.objects.values_list("pk", flat=True)) >= {recent[0].pk, late_old[0].pk}
    assert not AuditEvent.objects.filter(pk__in=[r.pk for r in old]).exists()
    assert verify_chain().intact


@pytest.mark.django_db(transaction=True)
def test_nothing_is_archived_or_purged_from_a_tampered_chain(tmp_path: Path) -> None:
    old = record(3, OLD)
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s", [old[1].pk])
        cursor.execute("SET session_replication_role = DEFAULT")
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 0 and result.stopped is not None and "altered" in result.stopped
    assert AuditEvent.objects.count() >= 3 and archive.segments(tmp_path) == []
    assert ComplianceAlert.objects.filter(rule="audit_chain_broken").exists()


@pytest.mark.django_db(transaction=True)
def test_an_altered_archive_file_is_detected(tmp_path: Path) -> None:
    record(3, OLD)
    services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    segment = archive.segments(tmp_path)[0]
    documents = list(archive.read_documents(segment.file))
    documents[1]["actor"] = "mallory"
    segment.file.write_bytes(gzip.compress(b"".join(chain.canonical_json(d) + b"\n" for d in documents)))
    report = verify_archive(tmp_path)
    assert report.broken is not None and report.broken.reason == "archive_altered"


@pytest.mark.django_db(transaction=True)
def test_rerunning_after_a_crash_between_archive_and_purge_writes_the_same_file(tmp_path: Path) -> None:
    rows = record(3, OLD)
    # The first run wrote the segment, then died before purging.
    written = archive.write_segment(tmp_path, [r.document() for r in rows], key=settings.AUDIT_CHECKPOINT_KEY)
    content, manifest = written.file.read_bytes(), written.manifest.read_bytes()
    result = services.audit_retention_apply(now=NOW, archive_dir=tmp_path)
    assert result.archived == 3 and len(archive.segments(tmp_path)) == 1
    assert written.file.read_bytes() == content and written.manifest.read_bytes() == manifest
    assert verify_archive(tmp_path).intact
