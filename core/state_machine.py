"""Guarded status changes of a stateful row: the table of allowed moves, the check, the history row."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db.models import Model

from core import bulk
from core.models import StatusTransition


class IllegalTransition(Exception):
    """A move its row's state machine does not allow (each domain raises its own subclass)."""

    def __init__(self, noun: str, subject_id: str, from_status: str, to_status: str) -> None:
        super().__init__(f"{noun} {subject_id}: {from_status} -> {to_status} is not allowed")
        self.subject_id = subject_id
        self.from_status = from_status
        self.to_status = to_status


@dataclass(frozen=True)
class StateMachine:
    """Which status may follow which (`moves`) for rows of one model.

    A row without a status yet (`""`, just created) may take any first status. `error` is the
    domain's IllegalTransition subclass; `history` the domain's StatusTransition model, whose
    foreign key to the row is named `history_fk`, when its moves are recorded.
    """

    noun: str
    moves: Mapping[str, frozenset[str]]
    id_field: str
    error: type[IllegalTransition] = IllegalTransition
    history: type[StatusTransition] | None = None
    history_fk: str = ""

    def __post_init__(self) -> None:
        if self.history is not None and not self.history_fk:
            raise ValueError(f"{self.noun}: a history model needs the name of its foreign key")

    def allows(self, from_status: str, to_status: str) -> bool:
        return not from_status or to_status in self.moves[from_status]

    def check(self, row: Any, to_status: str) -> None:
        """Raise `error` unless `row` may move from its status to `to_status`."""
        if not self.allows(row.status, to_status):
            raise self.refusal(row, to_status)

    def refusal(self, row: Any, to_status: str) -> IllegalTransition:
        """The error refusing `row` the move to `to_status` (for a rule stricter than the table)."""
        return self.error(self.noun, str(getattr(row, self.id_field)), row.status, to_status)

    def move(self, row: Any, to_status: str, *, actor: str = "", reason: str = "") -> str:
        """Move `row` (locked by the caller) to `to_status`, recording the move in `history`
        (written with `bulk.insert`); returns the status it left. Saving the row is the caller's."""
        self.check(row, to_status)
        from_status: str = row.status
        row.status = to_status
        self.record(row, from_status, actor=actor, reason=reason)
        return from_status

    def record(self, row: Any, from_status: str, *, actor: str = "", reason: str = "") -> None:
        """Record in `history` that `row` moved from `from_status` to its status now (for a caller
        that must save the row between the move and its record)."""
        if self.history is None:
            return
        fields: dict[str, Model | str] = {
            self.history_fk: row,
            "from_status": from_status,
            "to_status": row.status,
            "actor": actor,
            "reason": reason,
        }
        bulk.insert(self.history(**fields))
