"""PostgreSQL itself refuses to change or remove audit records and checkpoints."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit import services
from audit.models import AuditEvent, ChainCheckpoint
from tests.audit.support import audit_envelope


@pytest.fixture
def row(db: None) -> AuditEvent:
    envelope = audit_envelope(action="payment.captured")
    services.audit_event_record(event=envelope)
    return AuditEvent.objects.get(event_id=envelope.id)


def refused(sql: str, params: list[object]) -> str:
    with pytest.raises(DatabaseError) as caught, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(caught.value)


@pytest.mark.django_db
def test_update_is_refused_by_the_database(row: AuditEvent) -> None:
    message = refused("UPDATE audit_auditevent SET actor = 'mallory' WHERE id = %s", [row.pk])
    assert "append-only: UPDATE refused" in message
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).update(action="payment.refunded")
    assert AuditEvent.objects.get(pk=row.pk).actor == row.actor


@pytest.mark.django_db
def test_delete_is_refused_by_the_database(row: AuditEvent) -> None:
    message = refused("DELETE FROM audit_auditevent WHERE id = %s", [row.pk])
    assert "append-only: DELETE refused" in message
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(pk=row.pk).delete()
    assert AuditEvent.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_the_retention_setting_allows_delete_only_in_its_own_transaction(row: AuditEvent) -> None:
    # Even the retention path may not UPDATE.
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL audit.retention = 'on'")
        cursor.execute("UPDATE audit_auditevent SET actor = 'x' WHERE id = %s", [row.pk])
    # SET LOCAL ends with its transaction: the next one is refused again.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL audit.retention = 'on'")
    assert "DELETE refused" in refused("DELETE FROM audit_auditevent WHERE id = %s", [row.pk])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL audit.retention = 'on'")
        cursor.execute("DELETE FROM audit_auditevent WHERE id = %s", [row.pk])
    assert not AuditEvent.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_checkpoints_cannot_be_changed_or_removed_even_by_retention(row: AuditEvent) -> None:
    checkpoint = services.audit_checkpoint_create()
    assert checkpoint is not None
    assert "UPDATE refused" in refused(
        "UPDATE audit_chaincheckpoint SET sequence = sequence + 1 WHERE id = %s", [checkpoint.pk]
    )
    with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL audit.retention = 'on'")
        cursor.execute("DELETE FROM audit_chaincheckpoint WHERE id = %s", [checkpoint.pk])
    assert ChainCheckpoint.objects.filter(pk=checkpoint.pk).exists()
