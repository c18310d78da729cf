"""The Kafka -> Celery bridge: consume, validate, dispatch, commit; dead-letter what is poison.

Delivery is at-least-once and never skips: a partition's offset is committed only up to the last
message that is safely on the Redis broker (or in its dead-letter topic). When Redis, Kafka or
PostgreSQL is away, the failing message is sought back to and retried with backoff; consumers
are idempotent, so redelivery after a crash has its effect once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import codec, routing
from bridge.clients import new_consumer
from bridge.deadletters import dead_letter
from bridge.relay import OutboxRelay
from bridge.subscription import PatternSubscription
from kafka_platform import correlation, metrics
from kafka_platform.celery import app as celery_app
from kafka_platform.celery import queue_for_task
from kafka_platform.probes import Heartbeat

logger = logging.getLogger(__name__)

# Failures that pass: a broker, Redis or the database away for a while. Anything else is a bug
# and stops the bridge (uncommitted messages are redelivered to its successor).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    KombuOperationalError,
    redis.exceptions.RedisError,
    KafkaError,
    DatabaseError,
    ConnectionError,
    TimeoutError,
)


@dataclass
class BridgeOptions:
    group_id: str
    max_queue_depth: int
    poll_timeout_ms: int = 500
    max_poll_records: int = 500
    commit_interval_s: float = 1.0
    # kafka-python retries a commit until its request timeout (30 s), e.g. one for a partition
    # of a topic deleted meanwhile; the loop moves on sooner and tries again.
    commit_timeout_ms: int = 5000
    backpressure_check_s: float = 0.5
    lag_check_s: float = 10.0
    # How often the topics matching the subscription are listed: a new audit topic is joined
    # within about this long (see bridge.subscription).
    topic_refresh_s: float = 10.0
    retry_backoff_s: float = 0.5
    retry_backoff_max_s: float = 10.0
    relay: bool = True
    # /healthz turns 503 when the consume loop (or the relay's) has not turned for this long.
    max_silence_s: float = 60.0


@dataclass
class _Offsets:
    """Next offset to commit per partition, and what was last committed."""

    done: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def pending(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        keys = self.done.keys() if partitions is None else [p for p in partitions if p in self.done]
        return {tp: self.done[tp] for tp in keys if self.committed.get(tp) != self.done[tp]}


class _CommitOnRevoke(AsyncConsumerRebalanceListener):
    """Commits what was dispatched from partitions before they move to another owner.

    kafka-python 3 calls rebalance listeners on its IO loop, where the blocking `commit()` raises
    RuntimeError (the loop cannot wait on itself); the listener is async and awaits the commit.
    """

    def __init__(self, bridge: Bridge) -> None:
        self.bridge = bridge

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        pending = self.bridge.offsets.pending(revoked)
        if pending and self.bridge.consumer is not None:
            offsets = {tp: OffsetAndMetadata(off, "", -1) for tp, off in pending.items()}
            try:
                await self.bridge.consumer.commit_async(offsets)
            except KafkaError as exc:
                # The new owner starts from the last commit: redelivery, never a skip.
                logger.warning("bridge: offset commit before revocation failed (%s)", exc)
            else:
                logger.info("bridge committed %d partitions before revocation", len(pending))
        _forget(self.bridge, revoked)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # Evicted from the group: a commit would be refused, and the new owner redelivers.
        _forget(self.bridge, lost)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("bridge assigned %d partitions", len(assigned))


def _forget(bridge: Bridge, partitions: Iterable[TopicPartition]) -> None:
    """Drop the bridge's state of partitions it no longer owns."""
    for tp in partitions:
        bridge.offsets.done.pop(tp, None)
        bridge.offsets.committed.pop(tp, None)
        bridge.paused.discard(tp)
        # The partition's new owner reports its lag; a stale value here would hide recovery.
        metrics.BRIDGE_CONSUMER_LAG.remove(tp.topic, str(tp.partition))


class Bridge:
    def __init__(self, options: BridgeOptions) -> None:
        self.options = options
        self.offsets = _Offsets()
        self.paused: set[TopicPartition] = set()
        self.stopping = threading.Event()
        self.consumer: KafkaConsumer | None = None
        self.subscription: PatternSubscription | None = None
        self.relay: OutboxRelay | None = None
        self._redis = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2)
        self._deep_queues: set[str] = set()
        self._last_commit = self._last_pressure_check = self._last_lag_check = 0.0
        self._failures = 0
        self.heartbeat = Heartbeat(max_silence_s=options.max_silence_s)

    # --- lifecycle -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, frame: Any) -> None:
            logger.info("bridge: signal %s, finishing in-flight work", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self) -> None:
        if self.options.relay:
            self.relay = OutboxRelay(self.stopping, max_silence_s=self.options.max_silence_s)
            self.relay.start()
        self.consumer = new_consumer(
            group_id=self.options.group_id,
            max_poll_records=self.options.max_poll_records,
        )
        self.subscription = PatternSubscription(
            self.consumer,
            _CommitOnRevoke(self),
            pattern=routing.subscription_pattern(),
            refresh_s=self.options.topic_refresh_s,
            release=self._release_assignment,
        )
        self.subscription.start()
        logger.info("bridge consuming %s as group %s", routing.subscription_pattern(), self.options.group_id)
        try:
            while not self.stopping.is_set():
                self._step()
        finally:
            self.commit()
            self.consumer.close(autocommit=False)
            if self.relay:
                self.relay.join(timeout=30)
            logger.info("bridge stopped")

    def _release_assignment(self, gone: set[str]) -> bool:
        """Before the subscription is renewed: commit what was dispatched, forget the partitions.

        Offsets in topics that are `gone` cannot be committed, and nothing is left to redeliver.
        """
        assert self.consumer is not None
        _forget(self, [tp for tp in self.offsets.done if tp.topic in gone])
        self.commit()
        if self.offsets.pending():
            return False
        _forget(self, self.consumer.assignment())
        return True

    def health(self) -> dict[str, Any]:
        """The consume loop's liveness for /healthz (read from the probe's thread)."""
        if self.stopping.is_set():
            return {"status": "stopping"}
        return {
            **self.heartbeat.check(),
            "consecutive_dispatch_failures": self._failures,
            "paused_partitions": len(self.paused),
        }

    def relay_health(self) -> dict[str, Any]:
        if self.relay is None:
            return {"status": "ok", "detail": "relay not run by this bridge (--no-relay)"}
        return self.relay.health()

    # --- the loop ------------------------------------------------------------------------------

    def _step(self) -> None:
        assert self.consumer is not None
        self.heartbeat.beat()
        if self.subscription is not None:
            self.subscription.follow()
        now = time.monotonic()
        if now - self._last_pressure_check >= self.options.backpressure_check_s:
            self._last_pressure_check = now
            self._apply_backpressure()
        records = self.consumer.poll(timeout_ms=self.options.poll_timeout_ms)
        failed = False
        for tp, messages in records.items():
            if failed or tp not in self.consumer.assignment():
                if messages:
                    self.consumer.seek(tp, messages[0].offset)
                continue
            for i, message in enumerate(messages):
                try:
                    self._handle(message)
                except TRANSIENT_ERRORS as exc:
                    failed = True
                    self._failures += 1
                    logger.warning(
                        "bridge: %s@%s:%s not dispatched (%s: %s); retrying",
                        tp.topic,
                        tp.partition,
                        message.offset,
                        type(exc).__name__,
                        exc,
                    )
                    self.consumer.seek(tp, messages[i].offset)
                    break
                self.offsets.done[tp] = message.offset + 1
        if failed:
            close_old_connections()
            time.sleep(
                min(
                    self.options.retry_backoff_s * 2 ** min(self._failures, 8),
                    self.options.retry_backoff_max_s,
                )
            )
        else:
            self._failures = 0
        now = time.monotonic()
        if now - self._last_commit >= self.options.commit_interval_s:
            self.commit()
        if now - self._last_lag_check >= self.options.lag_check_s:
            self._last_lag_check = now
            self._record_lag()

    def _handle(self, record: Any) -> None:
        message = codec.IncomingMessage(
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
            headers=list(record.headers or []),
        )
        try:
            envelope, route = routing.validate(codec.decode(message))
        except codec.PoisonMessage as poison:
            dead_letter(message, reason=poison.reason, error=str(poison))
            metrics.KAFKA_MESSAGES.labels(topic=record.topic, outcome="dead_lettered").inc()
            return
        payload = envelope.to_task_payload()
        # Bound while dispatching: the log lines below and the tasks' `correlationid` header.
        with correlation.bound(
            envelope.correlation_id or envelope.id, event_id=envelope.id, event_type=envelope.type
        ):
            for task_name in route.tasks:
                celery_app.send_task(task_name, args=[payload], queue=queue_for_task(task_name))
                metrics.BRIDGE_DISPATCH.inc()
            logger.info(
                "dispatched %s@%s:%s to %s",
                record.topic,
                record.partition,
                record.offset,
                ", ".join(route.tasks),
            )
        metrics.KAFKA_MESSAGES.labels(topic=record.topic, outcome="dispatched").inc()

    def commit(self, partitions: Iterable[TopicPartition] | None = None) -> None:
        """Commit what is done; a failed commit is retried later (at worst, redelivery)."""
        self._last_commit = time.monotonic()
        pending = self.offsets.pending(partitions)
        if not pending or self.consumer is None:
            return
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(off, "", -1) for tp, off in pending.items()},
                timeout_ms=self.options.commit_timeout_ms,
            )
        except KafkaError as exc:
            logger.warning("bridge: offset commit failed (%s); will retry", exc)
            return
        self.offsets.committed.update(pending)

    # --- backpressure and lag ------------------------------------------------------------------

    def _queues_of(self, topic: str) -> set[str]:
        route = routing.route_for(topic)
        return {queue_for_task(name) for name in route.tasks} if route else set()

    def _apply_backpressure(self) -> None:
        """Pause partitions whose Celery queue is deeper than the bound; resume below half of it."""
        assert self.consumer is not None
        assignment = self.consumer.assignment()
        queues = {q for tp in assignment for q in self._queues_of(tp.topic)}
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for queue in sorted(queues):
                    pipe.llen(queue)
                depths = dict(zip(sorted(queues), pipe.execute(), strict=True))
        except redis.exceptions.RedisError:
            return  # dispatch will notice and back off on its own
        limit = self.options.max_queue_depth
        for queue, depth in depths.items():
            if depth > limit:
                self._deep_queues.add(queue)
            elif depth <= limit // 2:
                self._deep_queues.discard(queue)
        to_pause = {tp for tp in assignment if self._queues_of(tp.topic) & self._deep_queues}
        if to_pause - self.paused:
            logger.info("bridge: pausing %d partitions, queues deep: %s", len(to_pause - self.paused), depths)
            self.consumer.pause(*(to_pause - self.paused))
        if self.paused - to_pause:
            self.consumer.resume(*(self.paused - to_pause))
        self.paused = to_pause

    def _record_lag(self) -> None:
        assert self.consumer is not None
        assignment = list(self.consumer.assignment())
        if not assignment:
            return
        try:
            ends = self.consumer.end_offsets(assignment)
        except KafkaError:
            return
        for tp, end in ends.items():
            committed = self.offsets.committed.get(tp)
            if committed is None:
                committed = self.consumer.committed(tp) or 0
            metrics.BRIDGE_CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(
                max(end - committed, 0)
            )
