"""The platform's one circuit breaker, its state in Redis so every worker process sees the same circuit.

Closed: calls pass; `failure_threshold` counted failures in a row open it. Open: calls are refused
(CircuitOpen, or a BreakerDecision saying how long to wait) until `reset_timeout_s` has passed.
Half-open: one caller at a time is let through as a probe (its slot held at most `probe_ttl_s`, so
a probe lost with its worker does not block for ever); its success closes the circuit, its failure
opens it again. Any success closes the circuit and ends a run of failures.

Used by the payment gateway (`payments.gateway.gateway_breaker`, through `call`) and by
notifications per provider or webhook host (`notifications.protection`, through `check` and
`record_*`, because a delivery decides inside a transaction and records its outcome later).

Each decision is one Lua script, atomic in Redis. State: a hash `state_key` (fields `failures`,
`opened_until`, kept `state_ttl_s` after the last failure) and a string `probe_key`. The clock is
injected: `clock=None` reads Redis's own TIME inside the script (workers on several machines agree
without synchronised clocks); any other callable's seconds are used instead (tests drive a fake one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

import redis

T = TypeVar("T")

# `now`: the injected clock's reading, or Redis's TIME when none was given (ARGV[1] empty); the
# opening of every script here and of other Redis scripts that take the same injected clock.
LUA_NOW = """
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
"""

# ARGV: now, probe slot ms, cooldown s. Returns {code, seconds to wait, failures so far}, code
# 0 refused (open), 1 closed, 2 the half-open probe, 3 refused (half-open, a probe in flight).
_CHECK = (
    LUA_NOW
    + """
local v = redis.call('HMGET', KEYS[1], 'opened_until', 'failures')
local opened_until = tonumber(v[1] or '0')
local failures = v[2] or '0'
if opened_until == 0 then return {1, '0', failures} end
if now < opened_until then return {0, tostring(opened_until - now), failures} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then return {2, '0', failures} end
return {3, ARGV[3], failures}
"""
)

# ARGV: now, threshold, cooldown s, state ttl ms. Returns 1 when the circuit (re)opened.
_FAILURE = (
    LUA_NOW
    + """
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until') or '0')
local opened = 0
if opened_until > 0 then
  redis.call('HSET', KEYS[1], 'opened_until', tostring(now + tonumber(ARGV[3])), 'failures', 0)
  opened = 1
else
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if failures >= tonumber(ARGV[2]) then
    redis.call('HSET', KEYS[1], 'opened_until', tostring(now + tonumber(ARGV[3])), 'failures', 0)
    opened = 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return opened
"""
)


class CircuitOpen(Exception):
    """The circuit is open: the call was not attempted."""


@dataclass(frozen=True)
class BreakerDecision:
    allowed: bool
    probe: bool = False
    retry_after_s: float = 0.0
    probe_in_flight: bool = False
    # Failures counted since the circuit last closed: a success with none has nothing to reset.
    failures: int = 0


@cache
def _scripts(client: redis.Redis) -> dict[str, Any]:
    return {"check": client.register_script(_CHECK), "failure": client.register_script(_FAILURE)}


class CircuitBreaker:
    def __init__(
        self,
        name: str,
        *,
        client: Callable[[], redis.Redis],
        failure_threshold: int,
        reset_timeout_s: float,
        probe_ttl_s: float,
        counted: tuple[type[BaseException], ...] = (),
        state_key: str | None = None,
        probe_key: str | None = None,
        state_ttl_s: float = 24 * 60 * 60,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.name = name
        self._client = client  # a callable, so the settings it reads are read when used
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.probe_ttl_s = probe_ttl_s
        self.counted = counted
        self.state_key = state_key or f"circuit:{name}"
        self.probe_key = probe_key or f"circuit:{name}:probe"
        self.state_ttl_s = state_ttl_s
        self.clock = clock

    @property
    def client(self) -> redis.Redis:
        return self._client()

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    def check(self) -> BreakerDecision:
        """Whether a call may go now; a half-open circuit lets one probe through at a time."""
        code, wait, failures = _scripts(self.client)["check"](
            keys=[self.state_key, self.probe_key],
            args=[self._now(), max(int(self.probe_ttl_s * 1000), 1), repr(float(self.reset_timeout_s))],
        )
        if code in (0, 3):
            return BreakerDecision(
                allowed=False,
                retry_after_s=max(float(wait), 0.05),
                probe_in_flight=code == 3,
                failures=int(failures),
            )
        return BreakerDecision(allowed=True, probe=code == 2, failures=int(failures))

    def record_failure(self) -> bool:
        """Count a failure (a probe's reopens at once); True when the circuit (re)opened."""
        opened = _scripts(self.client)["failure"](
            keys=[self.state_key, self.probe_key],
            args=[
                self._now(),
                self.failure_threshold,
                repr(float(self.reset_timeout_s)),
                max(int(self.state_ttl_s * 1000), 1),
            ],
        )
        return bool(opened)

    def record_success(self) -> None:
        self.client.delete(self.state_key, self.probe_key)

    reset = record_success

    def is_open(self) -> bool:
        """Open or half-open: the circuit opened and no success has closed it since."""
        return self.client.hget(self.state_key, "opened_until") is not None

    def state(self) -> str:
        opened_until = self.client.hget(self.state_key, "opened_until")
        if opened_until is None:
            return "closed"
        now = float(self.client.time()[0]) if self.clock is None else self.clock()
        return "open" if float(opened_until) > now else "half_open"

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` through the circuit: CircuitOpen when refused; `counted` errors count."""
        decision = self.check()  # one round trip on the common path
        if not decision.allowed:
            if decision.probe_in_flight:
                raise CircuitOpen(f"circuit {self.name} is half-open and a probe is in flight")
            raise CircuitOpen(f"circuit {self.name} is open")
        try:
            result = fn()
        except self.counted:
            self.record_failure()
            raise
        if decision.probe or decision.failures:
            self.record_success()  # a success ends the run of failures
        return result
