"""Backpressure and lag on their own: a partition is held back while its Celery queue is deeper than
the bound and until the queue is back below half of it; the lag is the log end minus the commit.

Queue depths are read from the test Redis (queues of this test's own names); the Kafka consumer is
a stand-in."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError

from bridge.backpressure import Backpressure, ConsumerLag
from core import metrics
from tests.conftest import TEST_REDIS_URL

PAY, AUDIT = TopicPartition("bp.payments", 0), TopicPartition("bp.audit", 0)


@pytest.fixture
def queues() -> Iterator[dict[str, str]]:
    """Each topic's own queue in the test Redis, emptied afterwards."""
    run = uuid.uuid4().hex[:6]
    names = {PAY.topic: f"bp-pay-{run}", AUDIT.topic: f"bp-audit-{run}"}
    yield names
    redis.Redis.from_url(TEST_REDIS_URL).delete(*names.values())


def load_on(client: redis.Redis, queues: dict[str, str], *, max_in_flight: int = 0) -> Backpressure:
    return Backpressure(
        client,
        lambda topic: {queues[topic]} if topic in queues else set(),
        max_queue_depth=10,
        max_in_flight=max_in_flight,
    )


def fill(queue: str, depth: int) -> None:
    client = redis.Redis.from_url(TEST_REDIS_URL)
    client.delete(queue)
    if depth:
        client.rpush(queue, *range(depth))


def test_a_partition_is_held_while_its_queue_is_deep_and_until_below_half(queues: dict[str, str]) -> None:
    load = load_on(redis.Redis.from_url(TEST_REDIS_URL), queues)
    fill(queues[PAY.topic], 11)
    fill(queues[AUDIT.topic], 10)  # at the bound, not over it

    assert load.partitions_to_hold({PAY, AUDIT}) == {PAY}
    assert load.backlog()

    fill(queues[PAY.topic], 6)  # below the bound, not yet below half of it
    assert load.partitions_to_hold({PAY, AUDIT}) == {PAY}

    fill(queues[PAY.topic], 5)
    assert load.partitions_to_hold({PAY, AUDIT}) == set()


def test_no_backlog_while_the_queues_are_empty(queues: dict[str, str]) -> None:
    load = load_on(redis.Redis.from_url(TEST_REDIS_URL), queues)
    fill(queues[PAY.topic], 0)
    assert load.partitions_to_hold({PAY}) == set() and not load.backlog()


def test_without_redis_nothing_changes_and_the_workers_count_as_idle(queues: dict[str, str]) -> None:
    away = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    load = load_on(away, queues, max_in_flight=1)
    load.deep_queues.add(queues[PAY.topic])

    assert load.partitions_to_hold({PAY}) is None  # the dispatch notices Redis away on its own
    assert load.deep_queues == {queues[PAY.topic]}
    assert not load.workers_busy({PAY})


def test_natural_batching_off_never_asks_redis() -> None:
    away = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    assert not load_on(away, {}).workers_busy({PAY})


class EndsConsumer:
    """Stands in for KafkaConsumer's assignment, log-end offsets and the group's commits."""

    def __init__(self, ends: dict[TopicPartition, int], group_committed: dict[TopicPartition, int]) -> None:
        self.ends, self.group_committed = ends, group_committed
        self.fails = False

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        if self.fails:
            raise KafkaConnectionError("broker away")
        return {tp: self.ends[tp] for tp in partitions}

    def committed(self, partition: TopicPartition) -> int | None:
        return self.group_committed.get(partition)


def lag_gauge(tp: TopicPartition) -> float | None:
    [family] = metrics.BRIDGE_CONSUMER_LAG.collect()
    labels = {"topic": tp.topic, "partition": str(tp.partition)}
    return next((s.value for s in family.samples if s.labels == labels), None)


def test_the_lag_is_the_log_end_minus_what_was_committed() -> None:
    consumer = EndsConsumer({PAY: 50, AUDIT: 9}, group_committed={AUDIT: 4})
    lag = ConsumerLag()

    lag.record(consumer, committed={PAY: 45})  # AUDIT: nothing committed by this bridge yet

    assert lag.lag == {"bp.payments:0": 5, "bp.audit:0": 5}
    assert lag_gauge(PAY) == 5 and lag_gauge(AUDIT) == 5

    consumer.fails = True
    consumer.ends[PAY] = 80
    lag.record(consumer, committed={PAY: 45})
    assert lag.lag["bp.payments:0"] == 5  # not measured while Kafka is away

    lag.forget(PAY)
    assert "bp.payments:0" not in lag.lag and lag_gauge(PAY) is None
    lag.forget(PAY)  # twice is fine: never measured here any more
