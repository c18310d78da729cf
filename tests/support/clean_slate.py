"""The state every test starts from, put back after a transactional test (and at session start).

Django's flush TRUNCATEs every table of every model, then re-runs post_migrate (content types,
every app's permissions, the audit roles) and the seeded rows are put back after it. Most of that
is rewriting rows that never changed: a transactional test writes a few tables, and no test writes
content types or permissions (only migrate does). So `wipe` TRUNCATEs, in one statement, only the
model tables that hold a row, keeps content types and permissions, and puts back what the
migrations seed: the role groups with their grants (`core.roles`) and SEED_MIGRATIONS' rows.

Seeding through the ORM is most of the cost (about 0.2 s of queries), so the session seeds once
(`remember`, at its start) and copies the seeded tables into the schema `clean_slate`; each wipe
then copies them back in the transaction of its TRUNCATE. The result is what the flush left, at a
fraction of its cost (and fewer tables locked while the stack's processes may still be writing).
"""

from __future__ import annotations

import importlib

from django.db import connection, transaction

# Written by migrate alone (post_migrate): the same rows before and after any test.
KEPT_TABLES = frozenset({"django_content_type", "auth_permission"})

# Data migrations whose rows every later test (and the running stack) relies on: the beat
# schedules of each domain and the seeded notification templates. Each is idempotent.
SEED_MIGRATIONS = (
    "audit.migrations.0005_beat_schedules",
    "bridge.migrations.0003_outbox_sweep_schedule",
    "ledger.migrations.0003_reconciliation_schedule",
    "notifications.migrations.0002_seed_payment_templates",
    "notifications.migrations.0003_dispatch_schedule",
    "orders.migrations.0002_reservation_expiry_schedule",
    "orders.migrations.0003_seed_templates",
    "payments.migrations.0003_settlement_schedule",
    "payments.migrations.0006_ledger_reconciliation_schedule",
)


def tables_with_rows() -> list[str]:
    """The model tables (those flush would empty) holding at least one row, in one query."""
    tables = sorted(
        set(connection.introspection.django_table_names(only_existing=True, include_views=False))
        - KEPT_TABLES
    )
    if not tables:
        return []
    quote = connection.ops.quote_name
    probe = " UNION ALL ".join(f"(SELECT %s WHERE EXISTS (SELECT 1 FROM {quote(table)}))" for table in tables)
    with connection.cursor() as cursor:
        cursor.execute(probe, tables)
        return [row[0] for row in cursor.fetchall()]


SNAPSHOT_SCHEMA = "clean_slate"
# The tables `remember` copied (those holding a row once seeded); None until it ran.
_seeded: list[str] | None = None


def wipe() -> None:
    """Empty every model table a test wrote (sequences kept, as flush keeps them), then put the
    seeded rows back: copied from the session's snapshot, or seeded anew before `remember`."""
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        tables = tables_with_rows()
        if tables:
            # CASCADE: an empty table referencing a truncated one is named by PostgreSQL's check
            # too; it holds nothing, so cascading to it removes nothing more than flush does.
            cursor.execute(f"TRUNCATE {', '.join(quote(t) for t in tables)} CASCADE")
        if _seeded is not None:
            for table in _seeded:  # foreign keys are deferred to the commit: any order will do
                cursor.execute(f"INSERT INTO {quote(table)} SELECT * FROM {SNAPSHOT_SCHEMA}.{quote(table)}")
            # What the ORM's save would have done: celery beat reloads its schedule when this
            # moves, and a test may have changed a PeriodicTask the copy just put back.
            cursor.execute("UPDATE django_celery_beat_periodictasks SET last_update = clock_timestamp()")
    if _seeded is None:
        reseed()


def remember() -> None:
    """Wipe and seed through the ORM once, then copy every table holding a row (the seeded ones)
    into SNAPSHOT_SCHEMA, from where each later `wipe` puts them back."""
    global _seeded
    _seeded = None
    wipe()
    quote = connection.ops.quote_name
    with transaction.atomic(), connection.cursor() as cursor:
        seeded = tables_with_rows()
        cursor.execute(f"DROP SCHEMA IF EXISTS {SNAPSHOT_SCHEMA} CASCADE")
        cursor.execute(f"CREATE SCHEMA {SNAPSHOT_SCHEMA}")
        for table in seeded:
            cursor.execute(f"CREATE TABLE {SNAPSHOT_SCHEMA}.{quote(table)} AS TABLE {quote(table)}")
    _seeded = seeded


def reseed() -> None:
    """Put back what the migrations seed and the wipe removed: the role groups with their
    permissions, and the rows of SEED_MIGRATIONS.

    Without them, later flow tests ran with no notification templates (every email failed
    `template_not_found`) and no outbox sweep or notification dispatcher on beat.
    """
    from django.apps import apps
    from django.contrib.auth.models import Group, Permission

    from core.roles import sync_role_groups

    sync_role_groups(group_model=Group, permission_model=Permission)
    for name in SEED_MIGRATIONS:
        importlib.import_module(name).Migration.operations[0].code(apps, None)
