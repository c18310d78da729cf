"""The inbox: a consumer records each event id it had its effect for, in the effect's transaction."""

from __future__ import annotations

from collections.abc import Sequence

from django.db import connection

from bridge.codec import Envelope
from bridge.models import InboxEvent


def claim(*, consumer: str, event: Envelope) -> bool:
    """Record `event` as consumed by `consumer`; False when it already was (a redelivery).

    Call it inside the transaction that makes the event's effect: a rollback un-claims it.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InboxEvent._meta.db_table} (consumer, event_id, event_type, processed_at)"  # noqa: S608 - table name is ours
            " VALUES (%s, %s, %s, now()) ON CONFLICT (consumer, event_id) DO NOTHING RETURNING id",
            [consumer, event.id, event.type],
        )
        return cursor.fetchone() is not None


def claim_many(*, consumer: str, events: Sequence[Envelope]) -> set[str]:
    """`claim` for many events in one statement: the ids claimed now (not the redeliveries)."""
    unique = list({event.id: event for event in events}.values())
    if not unique:
        return set()
    rows = ", ".join(["(%s, %s, %s, now())"] * len(unique))
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {InboxEvent._meta.db_table} (consumer, event_id, event_type, processed_at)"  # noqa: S608 - table name is ours
            f" VALUES {rows} ON CONFLICT (consumer, event_id) DO NOTHING RETURNING event_id",
            [value for event in unique for value in (consumer, event.id, event.type)],
        )
        return {row[0] for row in cursor.fetchall()}


def seen(*, consumer: str, event: Envelope) -> bool:
    return InboxEvent.objects.filter(consumer=consumer, event_id=event.id).exists()


def seen_many(*, consumer: str, events: Sequence[Envelope]) -> set[str]:
    """The ids among `events` that `consumer` already had its effect for."""
    ids = [event.id for event in events]
    return set(
        InboxEvent.objects.filter(consumer=consumer, event_id__in=ids).values_list("event_id", flat=True)
    )
