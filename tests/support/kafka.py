"""Kafka helpers for tests: produce raw records and wait for the platform's output events."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bridge.codec import loads


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]

    def json(self) -> Any:
        return loads(self.value or b"")


def produce(
    bootstrap: str,
    topic: str,
    value: bytes | dict[str, Any],
    *,
    key: str | bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        raw = json.dumps(value).encode() if isinstance(value, dict) else value
        raw_key = key.encode() if isinstance(key, str) else key
        producer.send(topic, key=raw_key, value=raw, headers=headers or []).get(timeout=30)
    finally:
        producer.close()


class Collector:
    """Reads the given topics from their current end onwards; `wait_for` finds matching records."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        partitions = [
            TopicPartition(t, p) for t in topics for p in sorted(self.consumer.partitions_for_topic(t) or [])
        ]
        self.consumer.assign(partitions)
        self.consumer.seek_to_end(*partitions)
        for tp in partitions:
            self.consumer.position(tp)
        self.records: list[Record] = []

    def poll(self, timeout_ms: int = 200) -> None:
        for tp, batch in self.consumer.poll(timeout_ms=timeout_ms).items():
            for r in batch:
                self.records.append(
                    Record(tp.topic, tp.partition, r.offset, r.key, r.value, dict(r.headers or []))
                )

    def matching(self, topic: str, predicate: Callable[[Record], bool] = lambda r: True) -> list[Record]:
        return [r for r in self.records if r.topic == topic and predicate(r)]

    def wait_for(
        self,
        topic: str,
        predicate: Callable[[Record], bool] = lambda r: True,
        *,
        count: int = 1,
        timeout_s: float = 60.0,
    ) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.matching(topic, predicate)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(found)} of {count} records on {topic} after {timeout_s}s")
            self.poll()

    def settle(self, seconds: float) -> None:
        """Keep reading for `seconds`, to see what (else) arrives."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()

    def catch_up(self, timeout_s: float = 60.0) -> None:
        """Read until every assigned partition's end, as it is now: whatever was published before
        this call is in `records` after it."""
        partitions = list(self.consumer.assignment())
        ends = self.consumer.end_offsets(partitions)
        deadline = time.monotonic() + timeout_s
        while any(self.consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the collector did not reach the topics' ends in {timeout_s}s")
            self.poll()

    def close(self) -> None:
        self.consumer.close()


def subject_is(subject: str) -> Callable[[Record], bool]:
    return lambda r: r.key == subject.encode()
