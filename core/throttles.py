"""Per-client rate limits on the API's write endpoints (429 problem+json with Retry-After)."""

from __future__ import annotations

import logging
from typing import Any

from rest_framework.throttling import UserRateThrottle

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class WriteRateThrottle(UserRateThrottle):
    """Counts a client's POST/PUT/PATCH/DELETE requests (`writes` rate in REST_FRAMEWORK).

    The counters live in the shared cache (Redis), so every web process sees the same count. If the
    cache is unreachable the request is let through: a throttle must not turn an outage of its
    counter store into an outage of the API.
    """

    scope = "writes"

    def allow_request(self, request: Any, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return True
        try:
            return super().allow_request(request, view)
        except Exception:  # noqa: BLE001 - any cache failure: fail open, loudly
            logger.warning("throttle cache unavailable; request not counted", exc_info=True)
            return True
