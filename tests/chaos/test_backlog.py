"""Backpressure under a deep backlog: with the worker stopped, requests pile up in Kafka (the
bridge's consumer lag), not in Redis, which holds at most about BRIDGE_MAX_QUEUE_DEPTH tasks per
queue; when the worker starts, every request completes once (tests/chaos/exactly_once.py).

`make chaos` sends 20,000 (twice CHAOS_N=10000); `make test` 1,500.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from tests.chaos.conftest import Chaos
from tests.chaos.exactly_once import REQUESTED, assert_exactly_once, chaos_n, chaos_timeout_s, send
from tests.conftest import WORKER_QUEUES
from tests.support.kafka import Collector
from tests.support.waiting import wait_until

# Twice CHAOS_N, and never less than 1,500: a backlog not well beyond what Redis may hold (below)
# would test nothing.
N = int(os.environ.get("CHAOS_BACKLOG_N") or max(2 * chaos_n(default=750), 1500))
# Small bounds so that a CI-sized backlog is well beyond what Redis may hold: at most about
# DEPTH tasks of BATCH events each in a queue.
DEPTH = 20
BATCH = 5
QUEUE = "payments"  # where the bridge puts payment requests
# The bridge reads the queue depths before each poll and pauses then, so a queue may exceed the
# bound by what one poll hands on: max_poll_records (500), plus one batch the linger may add.
OVERSHOOT = 500 // BATCH + 1
HELD_AT_MOST = (DEPTH + OVERSHOOT) * BATCH  # requests Redis may hold

pytestmark = [
    pytest.mark.chaos,
    pytest.mark.timeout(chaos_timeout_s(N)),
    pytest.mark.stack_env(BRIDGE_MAX_QUEUE_DEPTH=str(DEPTH), BRIDGE_BATCH_MAX=str(BATCH)),
]


class RedisSampler:
    """Samples every worker queue's length and Redis's used_memory while the backlog waits."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.queues = WORKER_QUEUES.split(",")
        self.max_depth: dict[str, int] = defaultdict(int)
        self.baseline_memory = self.memory()
        self.max_memory = self.baseline_memory
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def memory(self) -> int:
        return int(self.client.info("memory")["used_memory"])

    def _run(self) -> None:
        while not self._stop.is_set():
            with self.client.pipeline(transaction=False) as pipe:
                for queue in self.queues:
                    pipe.llen(queue)
                depths = pipe.execute()
            for queue, depth in zip(self.queues, depths, strict=True):
                self.max_depth[queue] = max(self.max_depth[queue], depth)
            self.max_memory = max(self.max_memory, self.memory())
            self.samples += 1
            self._stop.wait(0.05)

    def __enter__(self) -> RedisSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def committed(chaos: Chaos) -> int:
    """The bridge group's committed offsets on the request topic, summed: how far it has handed
    requests on to Redis (it commits only what Redis holds)."""
    # Reads the group's offsets without joining it (no subscribe, no commit).
    consumer = KafkaConsumer(
        bootstrap_servers=chaos.stack.bootstrap,
        group_id=chaos.stack.env["KAFKA_CONSUMER_GROUP"],
        enable_auto_commit=False,
    )
    try:
        partitions = consumer.partitions_for_topic(REQUESTED) or set()
        return sum(consumer.committed(TopicPartition(REQUESTED, p)) or 0 for p in partitions)
    finally:
        consumer.close(autocommit=False)


def test_deep_backlog_waits_in_kafka_not_redis(chaos: Chaos, collector: Collector) -> None:
    assert N > 2 * HELD_AT_MOST, "a backlog Redis could hold whole tests nothing"
    chaos.stack.worker.stop()
    committed_before = committed(chaos)
    with RedisSampler(chaos.redis.url) as sampler:
        run = send(chaos.stack, N)
        # The bridge hands on tasks until the queue is deeper than the bound, then pauses.
        wait_until(
            lambda: chaos.bridge_loop().get("paused_partitions", 0) > 0,
            timeout_s=120,
            interval_s=0.5,
            what="the bridge pausing its partitions",
        )
        time.sleep(10)  # the backlog waits; nothing more may reach Redis
        handed_on = committed(chaos) - committed_before
        queued = sampler.client.llen(QUEUE)
    memory_mib = (sampler.max_memory - sampler.baseline_memory) / 2**20
    lag = N - handed_on
    deepest = sampler.max_depth[QUEUE]
    notes = (
        f"worker stopped: queue max {deepest} tasks of {BATCH} (bound {DEPTH}),"
        f" Redis +{memory_mib:.1f} MiB, lag {lag}"
    )
    print(notes, dict(sampler.max_depth), f"{sampler.samples} samples")

    assert sampler.samples > 10
    assert queued >= DEPTH, f"the bridge stopped before the bound ({queued} tasks queued)"
    assert deepest <= DEPTH + OVERSHOOT, f"{QUEUE} grew to {deepest} tasks, bound {DEPTH}"
    # The bridge commits only what Redis holds; the rest waits in Kafka, uncommitted.
    assert handed_on <= deepest * BATCH, f"{handed_on} requests committed, Redis held {deepest} tasks"
    assert lag >= N - HELD_AT_MOST, f"lag {lag} of a backlog of {N}"

    chaos.stack.worker.start()
    assert_exactly_once(chaos.stack, collector, run, notes=notes)
