"""The chaos stack: the session's processes restarted on a private Redis and behind a PostgreSQL
proxy a test can cut, so a test may stop, pause or refuse them without touching shared servers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
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
        "markers", "stack_env(**env): extra environment for the chaos stack's processes in this test"
    )


@pytest.fixture
def chaos(
    stack: Stack,
    kafka_broker: EmbeddedBroker,
    shared_db: None,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[Chaos]:
    """The stack restarted on a private Redis and behind a PostgreSQL proxy we can cut."""
    redis_server = PrivateRedis(tmp_path / "redis.log", persistent=True).start()
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
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(stack.logs())
        stack.reconfigure({})
        proxy.stop()
        redis_server.stop()
