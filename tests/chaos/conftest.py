"""The chaos stack: the session's processes restarted on a private Redis and behind a PostgreSQL
proxy a test can cut, so a test may stop, pause or refuse them without touching shared servers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from bridge.embedded import EmbeddedBroker
from tests.conftest import Stack
from tests.support.faults import TcpProxy
from tests.support.private_redis import PrivateRedis


@dataclass
class Chaos:
    stack: Stack
    redis: PrivateRedis
    postgres: TcpProxy
    broker: EmbeddedBroker

    def bridge_health(self) -> dict[str, Any]:
        """The bridge's /healthz checks by name ({} when it does not answer)."""
        try:
            health = requests.get(self.stack.probe_url("bridge", "/healthz"), timeout=2).json()
        except (requests.RequestException, ValueError):
            return {}
        return dict(health.get("checks", {}))

    def bridge_loop(self) -> dict[str, Any]:
        """The bridge's consume loop as its /healthz reports it."""
        return dict(self.bridge_health().get("consumer_loop", {}))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "stack_env(**env): extra environment for the chaos stack's processes of this module"
    )


@pytest.fixture(scope="module")
def chaos_stack(
    stack: Stack,
    kafka_broker: EmbeddedBroker,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[Chaos]:
    """The stack restarted on a private Redis and behind a PostgreSQL proxy we can cut, once for
    a module's scenarios (a restart of the four processes costs seconds, twice per scenario when
    each had its own); `stack_env` in the module's `pytestmark` adds to the processes' env."""
    redis_server = PrivateRedis(tmp_path_factory.mktemp("chaos-redis") / "redis.log", persistent=True).start()
    database = urlsplit(stack.env["DATABASE_URL"])
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432).start()
    marker = request.node.get_closest_marker("stack_env")
    stack.reconfigure(
        {
            "CELERY_BROKER_URL": redis_server.url,
            "DATABASE_URL": urlunsplit(
                database._replace(netloc=f"{database.username}@127.0.0.1:{proxy.port}")
            ),
            # A killed worker's unacknowledged tasks come back after this many seconds.
            "CELERY_VISIBILITY_TIMEOUT": "15",
            **(marker.kwargs if marker else {}),
        }
    )
    try:
        yield Chaos(stack, redis_server, proxy, kafka_broker)
    finally:
        stack.reconfigure({})
        proxy.stop()
        redis_server.stop()


@pytest.fixture
def chaos(chaos_stack: Chaos, shared_db: None, request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """The chaos stack for one scenario, whole again: what an earlier scenario of the module
    broke and a failure left broken (Redis stopped, PostgreSQL cut, a process killed) is back.
    Each scenario sends payments for a merchant of its own and waits for all of them, so the
    next starts on a stack with nothing left in flight."""
    if not chaos_stack.redis.running:
        chaos_stack.redis.start()
    if not chaos_stack.postgres.is_up:
        chaos_stack.postgres.restore()
    chaos_stack.stack.ensure_running()
    chaos_stack.stack.worker.wait_for_log("ready.")
    chaos_stack.stack.bridge.wait_for_log("bridge assigned")
    yield chaos_stack
    report = getattr(request.node, "rep_call", None)
    if report is None or report.failed:
        print(chaos_stack.stack.logs())
