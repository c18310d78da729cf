"""A clock tests move by hand, for anything that takes an injected `clock` (breakers, rate limits)."""

from __future__ import annotations


class FakeClock:
    """Seconds since the epoch that only change when the test says so."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
