"""Crash and outage tests over the whole stack: every request has exactly one effect.

Each test sends CHAOS_N payments (default 400; `make chaos` 10000) for a merchant of its own,
breaks something while they flow (and asserts that payments were in flight when it did), lets
the stack recover by itself, waits until the stack has consumed every copy of every event, then
checks that every request had exactly one effect: one payment captured with its three
transitions, one processed event, one ledger posting (two entries), one email notification
sent; the merchant's balance is exactly the sum of the payments, the ledger reconciles (every
balance matches its entries, each currency sums to zero), each payment has one audit record per
transition and the audit chain is intact. Nothing is missing (tests/chaos/exactly_once.py).
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.chaos.conftest import Chaos
from tests.chaos.exactly_once import (
    PROCESSED,
    Run,
    assert_exactly_once,
    chaos_n,
    chaos_timeout_s,
    ours,
    posted_count,
    send,
)
from tests.support.kafka import Collector

N = chaos_n()
pytestmark = [pytest.mark.chaos, pytest.mark.timeout(chaos_timeout_s(N))]


def under_way(chaos: Chaos, collector: Collector) -> Run:
    """N payments sent, a fifth of them processed: the crash comes in the middle of the stream."""
    run = send(chaos.stack, N)
    collector.wait_for(PROCESSED, ours(run.ids), count=N // 5, timeout_s=300)
    return run


def in_flight(run: Run) -> int:
    """Payments not through the pipeline yet (their ledger posting, the second hop, not done)."""
    return len(run.ids) - posted_count(run)


NOTHING_TESTED = "every payment was done before the crash: nothing was tested"


def test_worker_killed_mid_stream(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    chaos.stack.worker.kill()
    assert in_flight(run) > 0, NOTHING_TESTED
    chaos.stack.worker.start()
    assert_exactly_once(chaos.stack, collector, run)


def test_bridge_killed_mid_stream(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    chaos.stack.bridge.kill()
    assert in_flight(run) > 0, NOTHING_TESTED
    chaos.stack.bridge.start()
    assert_exactly_once(chaos.stack, collector, run)


def test_redis_restarted_while_events_flow(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    chaos.redis.stop()
    assert in_flight(run) > 0, NOTHING_TESTED
    time.sleep(3)
    chaos.redis.start()
    assert_exactly_once(chaos.stack, collector, run)
    assert chaos.stack.processes_alive(), "a process died instead of reconnecting"


def test_postgres_refusing_connections_for_a_few_seconds(chaos: Chaos, collector: Collector) -> None:
    run = under_way(chaos, collector)
    chaos.postgres.cut()
    assert in_flight(run) > 0, NOTHING_TESTED  # this process reaches PostgreSQL without the proxy
    time.sleep(5)
    chaos.postgres.restore()
    assert_exactly_once(chaos.stack, collector, run)
    assert chaos.stack.processes_alive(), "a process died instead of reconnecting"


def test_every_event_delivered_twice(chaos: Chaos, collector: Collector) -> None:
    run = send(chaos.stack, N, twice=True)
    assert_exactly_once(chaos.stack, collector, run)


def test_bridge_sigterm_is_graceful(chaos: Chaos) -> None:
    assert chaos.stack.bridge.stop(signal.SIGTERM) == 0
    chaos.stack.bridge.start()
