"""The inbox: a consumer records each event id it had its effect for, in the effect's transaction."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from functools import partial

from django.db import connection, transaction

from bridge.codec import Envelope
from bridge.models import InboxEvent

logger = logging.getLogger(__name__)


def _refused(consumer: str, event_ids: Sequence[str]) -> None:
    """Log each redelivery refused, once the refusing work commits (a rolled-back batch reruns).

    The only trace a redelivery leaves: without it, "it happened once" cannot be told apart
    from "the second copy was never consumed".
    """
    for event_id in event_ids:
        transaction.on_commit(partial(_log_refusal, consumer, event_id))


def _log_refusal(consumer: str, event_id: str) -> None:
    logger.info("inbox %s: event %s already handled, redelivery refused", consumer, event_id)


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
        claimed = cursor.fetchone() is not None
    if not claimed:
        _refused(consumer, [event.id])
    return claimed


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
        claimed = {row[0] for row in cursor.fetchall()}
    # Every copy but the one claimed is refused, a second copy within `events` too.
    copies = Counter(event.id for event in events)
    _refused(consumer, [i for i, n in copies.items() for _ in range(n - (i in claimed))])
    return claimed


def seen(*, consumer: str, event: Envelope) -> bool:
    """Whether `consumer` already had its effect for `event` (the caller then skips it)."""
    handled = InboxEvent.objects.filter(consumer=consumer, event_id=event.id).exists()
    if handled:
        _refused(consumer, [event.id])
    return handled


def seen_many(*, consumer: str, events: Sequence[Envelope]) -> set[str]:
    """The ids among `events` that `consumer` already had its effect for."""
    ids = [event.id for event in events]
    handled = set(
        InboxEvent.objects.filter(consumer=consumer, event_id__in=ids).values_list("event_id", flat=True)
    )
    _refused(consumer, [i for i in ids if i in handled])
    return handled
