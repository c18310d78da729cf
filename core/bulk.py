"""Deferred writes: inside `deferred_writes()`, rows given to `insert()` are written with one
INSERT per model when the block ends, and rows given to `update()` with one UPDATE per model,
instead of one statement each.

Batch handlers use it so that a hundred events cost a handful of statements (outbox rows, state
transitions, the rows they change) rather than hundreds. The block must run inside the transaction
whose changes the rows belong to, and an exception raised inside it must leave it: a savepoint
rolled back inside the block while the block goes on would still write the rows it had collected.
Inside the block, the database sees an updated row's new values only once the block ends: code in
it reads the row objects it holds, not the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Field, Model
from django.utils import timezone

M = TypeVar("M", bound=Model)


@dataclass
class _Pending:
    inserts: dict[type[Model], list[Model]] = field(default_factory=dict)
    # Per model: the rows to update (by identity, in first-update order) and the fields they changed.
    updates: dict[type[Model], dict[int, Model]] = field(default_factory=dict)
    update_fields: dict[type[Model], set[str]] = field(default_factory=dict)


_pending: ContextVar[_Pending | None] = ContextVar("deferred_writes", default=None)


def insert(row: M) -> M:
    """Insert `row` now, or at the end of the enclosing `deferred_writes()` block (then it has no pk)."""
    pending = _pending.get()
    if pending is None:
        row.save(force_insert=True)
    else:
        pending.inserts.setdefault(type(row), []).append(row)
    return row


def update(row: M, fields: Sequence[str]) -> M:
    """Write `fields` of the saved `row` now, or at the end of the enclosing `deferred_writes()` block
    (its `auto_now` fields too, as `save()` would)."""
    auto_now = [f.name for f in row._meta.concrete_fields if getattr(f, "auto_now", False)]
    now = timezone.now()
    for name in auto_now:
        setattr(row, name, now)
    pending = _pending.get()
    if pending is None or row.pk is None:
        row.save(update_fields=[*fields, *auto_now])
        return row
    model = type(row)
    pending.updates.setdefault(model, {})[id(row)] = row
    pending.update_fields.setdefault(model, set()).update(fields, auto_now)
    return row


@contextmanager
def deferred_writes() -> Iterator[None]:
    """Collect `insert()`ed and `update()`d rows and write them, in order, when the block ends
    without an error."""
    if _pending.get() is not None:  # nested: the outer block writes them
        yield
        return
    if not connection.in_atomic_block:
        raise RuntimeError("deferred_writes() belongs inside transaction.atomic()")
    pending = _Pending()
    token = _pending.set(pending)
    try:
        yield
    finally:
        _pending.reset(token)
    for model, rows in pending.updates.items():
        update_rows(list(rows.values()), sorted(pending.update_fields[model]))
    for model, inserted in pending.inserts.items():
        model._default_manager.bulk_create(inserted)


def update_rows(rows: Sequence[Model], fields: Sequence[str]) -> None:
    """Write `fields` of saved `rows` (one model) with one `UPDATE ... FROM (VALUES ...)`.

    What `QuerySet.bulk_update` does, without its CASE expression per field and row, whose
    building cost more Python per row than the statement saved. `auto_now` fields are not set here.
    """
    if not rows:
        return
    meta = rows[0]._meta
    columns: list[Field[Any, Any]] = []
    for name in ("pk", *fields):
        field = meta.pk if name == "pk" else meta.get_field(name)
        if not isinstance(field, Field) or field.column is None:
            raise ValueError(f"{meta.label}.{name} is not a column")
        columns.append(field)
    row_sql = "(" + ", ".join(f"%s::{field.db_type(connection)}" for field in columns) + ")"
    params = [
        field.get_db_prep_save(getattr(row, field.attname), connection) for row in rows for field in columns
    ]
    table = connection.ops.quote_name(meta.db_table)
    names = [connection.ops.quote_name(str(field.column)) for field in columns]
    assignments = ", ".join(f"{name} = v.{name}" for name in names[1:])
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS t SET {assignments} FROM (VALUES {', '.join([row_sql] * len(rows))})"  # noqa: S608 - names from the model
            f" AS v({', '.join(names)}) WHERE t.{names[0]} = v.{names[0]}",
            params,
        )
