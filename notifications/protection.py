"""Protection around providers and recipients, shared by every worker through Redis.

- A circuit breaker per provider (per target host for webhooks): closed until
  NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD provider faults in a row, then open for
  NOTIFICATIONS_BREAKER_COOLDOWN_S; after that one delivery at a time is let through as a probe
  (half-open): its success closes the breaker, its failure opens it again.
- A token bucket per channel and recipient: NOTIFICATIONS_RATE_LIMIT_BURST tokens, refilled at
  NOTIFICATIONS_RATE_LIMIT_PER_MINUTE. A delivery over the limit reserves the next free token
  (the bucket goes below zero) and is told how long to wait, so queued deliveries to one
  recipient leave one by one at the refill rate instead of all retrying at once.

Each decision is one Lua script, atomic in Redis, with Redis's clock, so workers on several
machines agree.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache

import redis
from django.conf import settings

KEY_PREFIX = "notifications:"
STATE_TTL_MS = 24 * 60 * 60 * 1000

_BREAKER_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until') or '0')
if opened_until == 0 then return {1, '0'} end
if now < opened_until then return {0, tostring(opened_until - now)} end
if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return {2, '0'} end
return {0, ARGV[2]}
"""

_BREAKER_FAILURE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local opened_until = tonumber(redis.call('HGET', KEYS[1], 'opened_until') or '0')
local opened = 0
if opened_until > 0 then
  redis.call('HSET', KEYS[1], 'opened_until', tostring(now + tonumber(ARGV[2])), 'failures', 0)
  opened = 1
else
  local failures = redis.call('HINCRBY', KEYS[1], 'failures', 1)
  if failures >= tonumber(ARGV[1]) then
    redis.call('HSET', KEYS[1], 'opened_until', tostring(now + tonumber(ARGV[2])), 'failures', 0)
    opened = 1
  end
end
redis.call('DEL', KEYS[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return opened
"""

_RATE_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
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


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(settings.NOTIFICATIONS_REDIS_URL, socket_timeout=5, socket_connect_timeout=5)


@cache
def _scripts() -> dict[str, redis.commands.core.Script]:
    client = _client()
    return {
        "breaker_check": client.register_script(_BREAKER_CHECK),
        "breaker_failure": client.register_script(_BREAKER_FAILURE),
        "rate_take": client.register_script(_RATE_TAKE),
    }


def _breaker_keys(name: str) -> list[str]:
    return [f"{KEY_PREFIX}breaker:{name}", f"{KEY_PREFIX}breaker-probe:{name}"]


@dataclass(frozen=True)
class BreakerDecision:
    allowed: bool
    probe: bool = False
    retry_after_s: float = 0.0


def breaker_check(name: str) -> BreakerDecision:
    """Whether a delivery through provider `name` may go now; a half-open breaker lets one through."""
    cooldown = settings.NOTIFICATIONS_BREAKER_COOLDOWN_S
    # A probe's slot is held at most this long, so a probe lost with its worker does not block for ever.
    probe_ttl_ms = int((settings.WEBHOOK_TIMEOUT_S + settings.NOTIFICATIONS_PROVIDER_TIMEOUT_S + 30) * 1000)
    code, wait = _scripts()["breaker_check"](keys=_breaker_keys(name), args=[probe_ttl_ms, str(cooldown)])
    if code == 0:
        return BreakerDecision(allowed=False, retry_after_s=max(float(wait), 0.05))
    return BreakerDecision(allowed=True, probe=code == 2)


def breaker_record_failure(name: str) -> bool:
    """Count a provider fault; True when the breaker (re)opened."""
    opened = _scripts()["breaker_failure"](
        keys=_breaker_keys(name),
        args=[
            settings.NOTIFICATIONS_BREAKER_FAILURE_THRESHOLD,
            str(settings.NOTIFICATIONS_BREAKER_COOLDOWN_S),
            STATE_TTL_MS,
        ],
    )
    return bool(opened)


def breaker_record_success(name: str) -> None:
    _client().delete(*_breaker_keys(name))


def breaker_is_open(name: str) -> bool:
    return _client().hget(_breaker_keys(name)[0], "opened_until") is not None


def rate_limit_reserve(*, channel: str, recipient: str) -> float:
    """Take a token for one delivery to `recipient`; the seconds to wait before sending (0: now)."""
    digest = hashlib.sha256(recipient.strip().lower().encode()).hexdigest()[:32]
    wait = _scripts()["rate_take"](
        keys=[f"{KEY_PREFIX}rate:{channel}:{digest}"],
        args=[settings.NOTIFICATIONS_RATE_LIMIT_BURST, settings.NOTIFICATIONS_RATE_LIMIT_PER_MINUTE / 60.0],
    )
    return float(wait)
