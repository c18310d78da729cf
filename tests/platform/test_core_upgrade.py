"""Upgrading an installation from before the shared library moved out of `kafka_platform` into
`core`: its idempotency keys and their content type are adopted, not lost or created twice."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.utils import timezone

from core.models import IdempotencyRecord

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("core.migrations.0001_initial")
TABLE = IdempotencyRecord._meta.db_table


def tables() -> set[str]:
    return set(connection.introspection.table_names())


def a_key_in_flight() -> IdempotencyRecord:
    return IdempotencyRecord.objects.create(
        client="client:a",
        key="k-1",
        scope="payments.create",
        fingerprint="f" * 64,
        state=IdempotencyRecord.State.IN_FLIGHT,
        locked_until=timezone.now() + timedelta(seconds=30),
    )


def test_an_installation_from_before_the_move_keeps_its_keys_and_content_type() -> None:
    record = a_key_in_flight()
    # How the old installation holds them: kafka_platform's table and content type.
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE {TABLE} RENAME TO {MIGRATION.OLD_TABLE}")
    ContentType.objects.filter(app_label="core", model="idempotencyrecord").update(app_label="kafka_platform")
    ContentType.objects.clear_cache()

    with connection.schema_editor() as editor:
        MIGRATION.adopt_or_create(apps, editor)

    assert TABLE in tables() and MIGRATION.OLD_TABLE not in tables()
    adopted = IdempotencyRecord.objects.get()
    assert (adopted.pk, adopted.key, adopted.state) == (record.pk, "k-1", "in_flight")
    ContentType.objects.clear_cache()
    assert ContentType.objects.get_for_model(IdempotencyRecord).app_label == "core"
    assert not ContentType.objects.filter(app_label="kafka_platform").exists()


def test_a_new_database_gets_the_table_and_a_migrated_one_is_left_alone() -> None:
    record = a_key_in_flight()
    with connection.schema_editor() as editor:
        MIGRATION.adopt_or_create(apps, editor)  # already there: nothing happens
    assert IdempotencyRecord.objects.get().pk == record.pk

    with connection.schema_editor() as editor:
        editor.delete_model(IdempotencyRecord)
        assert TABLE not in tables()
        MIGRATION.adopt_or_create(apps, editor)

    assert TABLE in tables()
    assert not IdempotencyRecord.objects.exists()
