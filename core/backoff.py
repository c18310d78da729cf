"""Retry delays: how long to wait before trying again, one formula for every retry loop.

A delay doubles with each retry from `first`, up to `cap`; `jitter` spreads retries that failed
together so they do not come back together. `Backoff` keeps the count for a loop that sleeps
between its own attempts; `scheduled_delay` reads a configured list of delays instead.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from enum import StrEnum


class Jitter(StrEnum):
    """How much of the computed delay is randomised."""

    # Exactly the computed delay.
    NONE = "none"
    # Between half the computed delay and all of it: spread, yet never much sooner than planned.
    EQUAL = "equal"
    # Anywhere between nothing and the computed delay.
    FULL = "full"


def backoff_delay(
    retries: int,
    *,
    first: float,
    cap: float | None = None,
    max_doublings: int | None = None,
    jitter: Jitter = Jitter.NONE,
    rng: random.Random | None = None,
) -> float:
    """The delay before retry number `retries` + 1 (`retries` made so far, from 0): `first` doubled
    `retries` times (at most `max_doublings` times), at most `cap`, then jittered."""
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    doublings = retries if max_doublings is None else min(retries, max_doublings)
    try:
        ceiling = first * 2.0**doublings
    except OverflowError:  # a count far past any cap
        ceiling = math.inf
    if cap is not None:
        ceiling = min(ceiling, cap)
    if jitter == Jitter.NONE:
        return ceiling
    uniform = (rng or random).uniform
    low = ceiling / 2 if jitter == Jitter.EQUAL else 0.0
    return uniform(low, ceiling)


class Backoff:
    """The delays of a loop that sleeps between its own attempts: `next_delay()` after each failure
    (`first`, then doubled up to `cap`), `reset()` after a success."""

    def __init__(self, *, first: float, cap: float, jitter: Jitter = Jitter.NONE) -> None:
        self.first = first
        self.cap = cap
        self.jitter = jitter
        self.failures = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self.failures, first=self.first, cap=self.cap, jitter=self.jitter)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


def scheduled_delay(step: int, schedule: Sequence[float]) -> float | None:
    """The delay of retry `step` (from 0) in a configured `schedule`; None when it is used up."""
    if step < 0:
        raise ValueError(f"step must be 0 or more, got {step}")
    return schedule[step] if step < len(schedule) else None
