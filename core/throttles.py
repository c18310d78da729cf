"""Per-client rate limits on the API's write endpoints (429 problem+json with Retry-After)."""

from __future__ import annotations

import logging
import uuid
from functools import cache
from typing import Any

import redis
from django.conf import settings
from rest_framework.throttling import UserRateThrottle

from core.circuit_breaker import LUA_NOW

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
KEY_PREFIX = "kp-throttle"

# A sliding window log, decided in one script so that concurrent requests cannot both read the
# same count and both pass (DRF's own throttle reads the history, then writes it back: 16 threads
# got 1,009 writes through a limit of 600). KEYS[1]: the client's sorted set of request times.
# ARGV: now ('' = Redis's TIME), limit, window s, a unique member. Returns {1, '0'} when counted,
# {0, seconds until the oldest counted request leaves the window} when refused.
_TAKE = (
    LUA_NOW
    + """
local limit = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return {1, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tostring(tonumber(oldest[2]) + window - now)}
"""
)


@cache
def _script(url: str) -> Any:
    # Short timeouts: a slow Redis must not hold every write request for long (we fail open).
    client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
    return client.register_script(_TAKE)


def _redis_url() -> str:
    return str(settings.API_RATE_LIMIT_REDIS_URL or settings.CACHES["default"]["LOCATION"])


class WriteRateThrottle(UserRateThrottle):
    """Counts a client's POST/PUT/PATCH/DELETE requests (`writes` rate in REST_FRAMEWORK).

    The client is the authenticated user (else its address). Its requests of the last window are
    kept in Redis and counted and added to atomically, so every web process and thread sees the
    same count and no more than the limit pass. If Redis is unreachable the request is let
    through: a throttle must not turn an outage of its counter store into an outage of the API.
    """

    scope = "writes"

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method in SAFE_METHODS or self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        limit, window_s = self.parse_rate(self.rate)
        try:
            allowed, wait = _script(_redis_url())(
                keys=[f"{KEY_PREFIX}:{key}"], args=["", limit, window_s, uuid.uuid4().hex]
            )
        except redis.RedisError:
            logger.warning("throttle store unavailable; request not counted", exc_info=True)
            return True
        self._wait = max(float(wait), 0.0)
        return bool(int(allowed))

    def wait(self) -> float | None:
        return getattr(self, "_wait", None)
