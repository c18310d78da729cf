"""Long outages of one dependency in the middle of the payments: the Kafka broker paused (a hung
broker: sockets open, nothing answers), PostgreSQL refusing connections, Redis paused. Nothing is
restarted by hand; when the dependency is back every payment has exactly one effect
(tests/chaos/exactly_once.py).

These wait out real outages (30-60 s each), so `make test` runs them at a smaller N than the
crash tests; `make chaos` runs them at CHAOS_N=10000.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.exactly_once import (
    PROCESSED,
    Run,
    assert_exactly_once,
    captured_count,
    chaos_n,
    chaos_timeout_s,
    ours,
    posted_count,
    send,
)
from tests.support.faults import paused
from tests.support.kafka import Collector

N = chaos_n(default=300)
BROKER_PAUSE_S = 30
POSTGRES_OUTAGE_S = 60
REDIS_PAUSE_S = 60

# Half as many again arrive during the PostgreSQL and Redis outages.
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(chaos_timeout_s(N * 3 // 2, outage_s=REDIS_PAUSE_S))]


def under_way(chaos: Chaos, collector: Collector) -> Run:
    """N payments sent, a fifth of them processed: the outage starts in the middle of the stream."""
    run = send(chaos.stack, N)
    collector.wait_for(PROCESSED, ours(run.ids), count=N // 5, timeout_s=300)
    return run


def test_kafka_broker_paused_for_30_s(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    assert chaos.broker.process is not None
    with paused(chaos.broker.process.pid, BROKER_PAUSE_S):
        in_flight = N - posted_count(run)
    assert in_flight > 0, "every payment was done before the broker stopped: nothing was tested"
    assert_exactly_once(chaos.stack, collector, run, notes=f"broker paused {BROKER_PAUSE_S}s")
    assert chaos.stack.processes_alive(), "a process died instead of waiting for the broker"


def test_postgres_refusing_connections_for_60_s(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    accepted = chaos.postgres.accepted
    with chaos.postgres.outage(POSTGRES_OUTAGE_S):
        time.sleep(5)  # transactions open at the cut fail; none can start after it
        stalled_at = posted_count(run)
        # Requests keep arriving while the database is away (Kafka takes them).
        run = send(chaos.stack, N // 2, more_for=run)
        time.sleep(POSTGRES_OUTAGE_S - 15)
        during = posted_count(run)
    assert stalled_at < N, "every payment was done before PostgreSQL went away: nothing was tested"
    assert during == stalled_at, "payments were posted while PostgreSQL refused connections"
    assert_exactly_once(chaos.stack, collector, run, notes=f"postgres refused {POSTGRES_OUTAGE_S}s")
    assert chaos.postgres.accepted > accepted, "nothing reconnected to PostgreSQL"
    assert chaos.stack.processes_alive(), "a process died instead of reconnecting"


def test_redis_paused_for_60_s(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    first = len(run.ids)
    failures, silence = 0, 0.0
    redis_seen: list[dict[str, Any]] = []
    with paused(chaos.redis.pid, REDIS_PAUSE_S):
        in_flight = N - posted_count(run)
        # Requests keep arriving while Redis is away; the bridge cannot hand them on: its
        # dispatches fail, or block on the silent socket (its loop stops beating).
        run = send(chaos.stack, N // 2, more_for=run)
        deadline = time.monotonic() + REDIS_PAUSE_S - 10
        while time.monotonic() < deadline:
            health = chaos.bridge_health()
            loop = health.get("consumer_loop", {})
            failures = max(failures, loop.get("consecutive_dispatch_failures", 0))
            silence = max(silence, loop.get("last_beat_s_ago", 0.0))
            redis_seen.append(health.get("redis", {}))
            time.sleep(1)
        arrived_during = Run(run.merchant, run.ids[first:])
        captured_during = captured_count(arrived_during)
    assert in_flight > 0, "every payment was done before Redis stopped: nothing was tested"
    assert failures > 0 or silence > 10, "the bridge went on as if Redis were there"
    assert captured_during == 0, "payments were captured while Redis was paused"
    # The bridge's /healthz names Redis, and the partitions waiting on it, while it lasts.
    unreachable = [check for check in redis_seen if check.get("status") in ("degraded", "down")]
    assert unreachable, f"/healthz never said Redis was unreachable: {redis_seen[-3:]}"
    assert chaos.redis.url.rsplit(":", 1)[1] in unreachable[-1]["broker"]
    assert any(check.get("waiting_partitions") for check in unreachable), unreachable[-1]
    assert_exactly_once(chaos.stack, collector, run, notes=f"redis paused {REDIS_PAUSE_S}s")
    assert chaos.stack.processes_alive(), "a process died instead of waiting for Redis"
