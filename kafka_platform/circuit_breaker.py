"""A circuit breaker whose state lives in Redis, so every worker process sees the same circuit.

Closed: calls pass; `failure_threshold` consecutive failures open it. Open: calls fail fast with
CircuitOpen until `reset_timeout_s` has passed. Half-open: one caller at a time is let through as a
probe; its success closes the circuit, its failure opens it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import TypeVar

import redis
from django.conf import settings

T = TypeVar("T")


class CircuitOpen(Exception):
    """The circuit is open: the call was not attempted."""


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        failure_threshold: int,
        reset_timeout_s: float,
        counted: tuple[type[BaseException], ...],
    ) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.counted = counted
        self._failures_key = f"circuit:{name}:failures"
        self._open_until_key = f"circuit:{name}:open_until"
        self._probe_key = f"circuit:{name}:probe"

    @property
    def client(self) -> redis.Redis:
        return _redis(settings.CELERY_BROKER_URL)

    def state(self) -> str:
        return self._state(self.client.get(self._open_until_key))

    @staticmethod
    def _state(open_until: bytes | None) -> str:
        if open_until is None:
            return "closed"
        return "open" if float(open_until) > time.time() else "half_open"

    def call(self, fn: Callable[[], T]) -> T:
        # One round trip on the common path: the circuit's state and whether failures are counting.
        open_until, failures = self.client.mget(self._open_until_key, self._failures_key)
        state = self._state(open_until)
        if state == "open":
            raise CircuitOpen(f"circuit {self.name} is open")
        if state == "half_open" and not self.client.set(
            self._probe_key, "1", nx=True, px=max(int(self.reset_timeout_s * 1000), 1000)
        ):
            raise CircuitOpen(f"circuit {self.name} is half-open and a probe is in flight")
        try:
            result = fn()
        except self.counted:
            self._record_failure(probing=state == "half_open")
            raise
        if state == "half_open" or failures is not None:
            self.reset()  # a success ends the run of consecutive failures
        return result

    def _record_failure(self, *, probing: bool) -> None:
        failures = self.client.incr(self._failures_key)
        if probing or failures >= self.failure_threshold:
            self.client.set(self._open_until_key, str(time.time() + self.reset_timeout_s))
        if probing:
            self.client.delete(self._probe_key)

    def reset(self) -> None:
        self.client.delete(self._failures_key, self._open_until_key, self._probe_key)
