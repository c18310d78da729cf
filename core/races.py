"""A database transaction that lost a race runs again, one way for every batch handler.

Two transactions racing over the same rows end in one of three ways that a second run resolves:
a deadlock or serialization failure (the loser simply runs again), or a unique violation (both
inserted the same key; the loser's second run finds the winner's committed row and treats it as
stored). `run_again_after_race` runs a transaction body so; anything else it raises is the
caller's. Inside an outer transaction a second run would only repeat the failure, so there the
body runs once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import DatabaseError, IntegrityError, connection

from core.backoff import Jitter, backoff_delay
from core.logs import safe_error

logger = logging.getLogger(__name__)

T = TypeVar("T")

# serialization_failure, deadlock_detected: the transaction lost a race and can simply run again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})
UNIQUE_VIOLATION = "23505"
ATTEMPTS = 6
# Before attempt n + 1 the body waits a random time below 0.01 s * 2**n (20 ms, 40 ms ... 320 ms),
# so bodies that collided do not collide again.
FIRST_DELAY_S = 0.01


class StillContended(Exception):
    """The body lost its race `ATTEMPTS` times in a row: for the caller's own retry (a task's)."""


def sqlstate(exc: DatabaseError) -> tuple[str | None, str | None]:
    """The SQLSTATE of a database error, and the constraint it names (if any)."""
    cause = exc.__cause__
    diag = getattr(cause, "diag", None)
    return getattr(cause, "sqlstate", None), getattr(diag, "constraint_name", None)


def run_again_after_race(body: Callable[[], T], *, what: str, attempts: int = ATTEMPTS) -> T:
    """`body()` (one transaction of its own), run again after a deadlock, a serialization failure
    or a unique violation, up to `attempts` runs; then StillContended (the last error chained).
    `what` names the work in logs."""
    if connection.in_atomic_block:
        attempts = 1
    for attempt in range(1, attempts + 1):
        try:
            return body()
        except DatabaseError as exc:
            state, _ = sqlstate(exc)
            unique = isinstance(exc, IntegrityError) and state == UNIQUE_VIOLATION
            if not unique and state not in RETRYABLE_SQLSTATES:
                raise
            if unique and attempt > 1:
                raise  # a key still taken at the second look is no race
            if attempt == attempts:
                raise StillContended(f"{what}: {safe_error(exc)}") from exc
            logger.info("%s run again after SQLSTATE %s", what, state)
            if not unique:  # the unique winner has committed: the next run sees its row at once
                time.sleep(backoff_delay(attempt, first=FIRST_DELAY_S, jitter=Jitter.FULL))
    raise AssertionError("unreachable")
