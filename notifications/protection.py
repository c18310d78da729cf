"""Protection around providers and recipients, shared by every worker through Redis.

- A circuit breaker per provider (per target host for webhooks), the platform's one
  (`core.circuit_breaker`): closed until NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD provider
  faults in a row, then open for NOTIFICATIONS_BREAKER_COOLDOWN_S; after that one delivery at a
  time is let through as a probe (half-open): its success closes the breaker, its failure opens it
  again. Its keys: `notifications:breaker:<name>` (hash) and `notifications:breaker-probe:<name>`.
- A token bucket per channel and recipient: NOTIFICATIONS_RATE_LIMIT_BURST tokens, refilled at
  NOTIFICATIONS_RATE_LIMIT_PER_MINUTE. A delivery over the limit reserves the next free token
  (the bucket goes below zero) and is told how long to wait, so queued deliveries to one
  recipient leave one by one at the refill rate instead of all retrying at once.

Each decision is one Lua script, atomic in Redis. The clock is Redis's own TIME (`clock=None`), so
workers on several machines agree; tests inject a fake clock instead.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache

import redis
from django.conf import settings

from core.circuit_breaker import LUA_NOW, BreakerDecision, CircuitBreaker

KEY_PREFIX = "notifications:"
STATE_TTL_S = 24 * 60 * 60

__all__ = [
    "BreakerDecision",
    "breaker_check",
    "breaker_is_open",
    "breaker_record_failure",
    "breaker_record_success",
    "rate_limit_reserve",
]

# ARGV: now ('' for Redis's TIME), capacity, refill per second.
_RATE_TAKE = (
    LUA_NOW
    + """
local capacity = tonumber(ARGV[2])
local rate = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(v[1])
local ts = tonumber(v[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity - tokens) / rate * 1000) + 1000)
if tokens >= 0 then return '0' end
return tostring(-tokens / rate)
"""
)

Clock = Callable[[], float] | None


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.NOTIFICATIONS_REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


@cache
def _scripts() -> dict[str, redis.commands.core.Script]:
    return {"rate_take": _client().register_script(_RATE_TAKE)}


def breaker(name: str, *, clock: Clock = None) -> CircuitBreaker:
    """The breaker of provider (or webhook host) `name`, with the settings read now."""
    return CircuitBreaker(
        name,
        client=_client,
        failure_threshold=settings.NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD,
        reset_timeout_s=settings.NOTIFICATIONS_BREAKER_COOLDOWN_S,
        # A probe's slot is held at most this long, so a probe lost with its worker does not block for ever.
        probe_ttl_s=settings.WEBHOOK_TIMEOUT_S + settings.NOTIFICATIONS_PROVIDER_TIMEOUT_S + 30,
        state_key=f"{KEY_PREFIX}breaker:{name}",
        probe_key=f"{KEY_PREFIX}breaker-probe:{name}",
        state_ttl_s=STATE_TTL_S,
        clock=clock,
    )


def breaker_check(name: str, *, clock: Clock = None) -> BreakerDecision:
    """Whether a delivery through provider `name` may go now; a half-open breaker lets one through."""
    return breaker(name, clock=clock).check()


def breaker_record_failure(name: str, *, clock: Clock = None) -> bool:
    """Count a provider fault; True when the breaker (re)opened."""
    return breaker(name, clock=clock).record_failure()


def breaker_record_success(name: str) -> None:
    breaker(name).record_success()


def breaker_is_open(name: str) -> bool:
    return breaker(name).is_open()


def rate_limit_reserve(*, channel: str, recipient: str, clock: Clock = None) -> float:
    """Take a token for one delivery to `recipient`; the seconds to wait before sending (0: now)."""
    digest = hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:32]
    wait = _scripts()["rate_take"](
        keys=[f"{KEY_PREFIX}rate:{channel}:{digest}"],
        args=[
            "" if clock is None else repr(clock()),
            settings.NOTIFICATIONS_RATE_LIMIT_BURST,
            settings.NOTIFICATIONS_RATE_LIMIT_PER_MINUTE / 60.0,
        ],
    )
    return float(wait)
