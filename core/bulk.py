"""Deferred inserts: inside `deferred_inserts()`, rows given to `insert()` are written with one
INSERT per model when the block ends, instead of one statement each.

Batch handlers use it so that a hundred events cost a handful of statements (outbox rows, state
transitions) rather than hundreds. The block must run inside the transaction whose changes the
rows belong to, and an exception raised inside it must leave it: a savepoint rolled back inside
the block while the block goes on would still write the rows it had collected.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from django.db import connection
from django.db.models import Model

M = TypeVar("M", bound=Model)

_pending: ContextVar[dict[type[Model], list[Model]] | None] = ContextVar("deferred_inserts", default=None)


def insert(row: M) -> M:
    """Insert `row` now, or at the end of the enclosing `deferred_inserts()` block (then it has no pk)."""
    pending = _pending.get()
    if pending is None:
        row.save(force_insert=True)
    else:
        pending.setdefault(type(row), []).append(row)
    return row


@contextmanager
def deferred_inserts() -> Iterator[None]:
    """Collect `insert()`ed rows and write them, in order, when the block ends without an error."""
    if _pending.get() is not None:  # nested: the outer block writes them
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("deferred_inserts() belongs inside transaction.atomic()")
    pending: dict[type[Model], list[Model]] = {}
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
    for model, rows in pending.items():
        model._default_manager.bulk_create(rows)
