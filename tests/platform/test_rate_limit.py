"""The API's write limit under concurrency: a real threaded test server and a real Redis, many
simultaneous POSTs from one client, exactly the limit accepted."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
import requests
from django.test import override_settings
from rest_framework.authtoken.models import Token

from core import throttles
from core.throttles import WriteRateThrottle
from tests.conftest import TEST_REDIS_URL
from tests.support.builders import payment_request
from tests.support.users import make_api_user

LIMIT = 20
THREADS = 16
REQUESTS = 96


def _post(base: str, token: str) -> int:
    answer = requests.post(
        f"{base}/api/v1/payments/",
        data=json.dumps(payment_request()),
        headers={
            "Authorization": f"Token {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": str(uuid.uuid4()),
        },
        timeout=60,
    )
    if answer.status_code == 429:
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert int(answer.headers["Retry-After"]) > 0
    return answer.status_code


@pytest.mark.django_db(transaction=True)
def test_concurrent_writes_from_one_client_pass_exactly_the_limit(
    live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # New users, so their counters start empty; an hour's window, so none expire mid-test.
    monkeypatch.setattr(WriteRateThrottle, "THROTTLE_RATES", {"writes": f"{LIMIT}/hour"})
    users = [make_api_user("fast"), make_api_user("other")]
    # Primary keys come back after a flush: a counter left from an earlier run must not count.
    store = redis.Redis.from_url(TEST_REDIS_URL)
    store.delete(*(f"{throttles.KEY_PREFIX}:throttle_writes_{user.pk}" for user in users))
    fast, other = (Token.objects.create(user=user).key for user in users)

    with override_settings(API_RATE_LIMIT_REDIS_URL=TEST_REDIS_URL):
        with ThreadPoolExecutor(max_workers=THREADS) as pool:
            codes = Counter(pool.map(lambda _: _post(live_server.url, fast), range(REQUESTS)))
        assert codes == {202: LIMIT, 429: REQUESTS - LIMIT}, codes
        # The limit is per client: another one still writes.
        assert _post(live_server.url, other) == 202
