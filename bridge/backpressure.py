"""The workers' load as the bridge sees it (Celery queue depths, tasks in flight) and its consumer lag.

A partition whose Celery queue is deeper than the bound is held back (bridge.gate pauses it) until
the queue is below half of it. The dispatcher asks whether a backlog shows, and whether the
workers hold enough tasks that waiting for a fuller batch costs nothing (natural batching). Which
queues a topic's tasks go to is the bridge's to say (`queues_of`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import redis
from kafka import TopicPartition
from kafka.errors import KafkaError

from core import metrics

# Kombu's Redis transport keeps a worker's prefetched, not yet acknowledged tasks in this hash.
UNACKED_KEY = "unacked"


class Backpressure:
    def __init__(
        self,
        redis_client: redis.Redis,
        queues_of: Callable[[str], set[str]],
        *,
        max_queue_depth: int,
        max_in_flight: int,
    ) -> None:
        self.redis = redis_client
        self.queues_of = queues_of
        self.max_queue_depth = max_queue_depth
        self.max_in_flight = max_in_flight
        self.queue_depths: dict[str, int] = {}
        self.deep_queues: set[str] = set()

    def partitions_to_hold(self, assignment: Iterable[TopicPartition]) -> set[TopicPartition] | None:
        """Read the depths of the assigned partitions' queues: the partitions that feed a queue
        deeper than the bound (or not yet back below half of it). None when Redis cannot say:
        dispatch will notice and back off on its own."""
        assignment = set(assignment)
        queues = sorted({q for tp in assignment for q in self.queues_of(tp.topic)})
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.llen(queue)
                depths = dict(zip(queues, pipe.execute(), strict=True))
        except redis.exceptions.RedisError:
            return None
        self.queue_depths = depths
        for queue, depth in depths.items():
            if depth > self.max_queue_depth:
                self.deep_queues.add(queue)
            elif depth <= self.max_queue_depth // 2:
                self.deep_queues.discard(queue)
        return {tp for tp in assignment if self.queues_of(tp.topic) & self.deep_queues}

    def backlog(self) -> bool:
        """Did a worker queue hold tasks when last read?"""
        return any(depth > 0 for depth in self.queue_depths.values())

    def workers_busy(self, assigned: Iterable[TopicPartition]) -> bool:
        """Do the workers hold at least `max_in_flight` tasks (queued in Redis, or prefetched and
        not yet acknowledged)? Unknown (Redis away) counts as not busy: nothing waits for it."""
        if self.max_in_flight <= 0:
            return False
        queues = sorted({q for tp in assigned for q in self.queues_of(tp.topic)})
        try:
            with self.redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.llen(queue)
                pipe.hlen(UNACKED_KEY)
                counts = pipe.execute()
        except redis.exceptions.RedisError:
            return False
        return sum(counts) >= self.max_in_flight


class LagSource(Protocol):
    """The part of KafkaConsumer the lag is read from."""

    def assignment(self) -> set[TopicPartition]: ...

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    def committed(self, partition: TopicPartition) -> int | None: ...


class ConsumerLag:
    """Log-end offset minus committed offset per assigned partition (`bridge_consumer_lag`)."""

    def __init__(self) -> None:
        self.lag: dict[str, int] = {}

    def record(self, consumer: LagSource, committed: Mapping[TopicPartition, int]) -> None:
        """Measure the assigned partitions' lag against what this bridge committed (or, for a
        partition it has not committed yet, the group's last commit)."""
        assignment = list(consumer.assignment())
        if not assignment:
            return
        try:
            ends = consumer.end_offsets(assignment)
        except KafkaError:
            return
        for tp, end in ends.items():
            offset = committed.get(tp)
            if offset is None:
                offset = consumer.committed(tp) or 0
            lag = max(end - offset, 0)
            metrics.BRIDGE_CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            self.lag[f"{tp.topic}:{tp.partition}"] = lag

    def forget(self, tp: TopicPartition) -> None:
        """The partition's new owner reports its lag; a stale value here would hide recovery."""
        self.lag.pop(f"{tp.topic}:{tp.partition}", None)
        try:
            metrics.BRIDGE_CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass  # never measured here
