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
from collections import Counter
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
from bridge.codec import Envelope
from bridge.deadletters import dead_letter
from bridge.relay import OutboxRelay
from bridge.subscription import PatternSubscription
from kafka_platform import correlation, metrics, tracing
from kafka_platform.celery import app as celery_app
from kafka_platform.celery import queue_for_task
from kafka_platform.probes import Heartbeat

logger = logging.getLogger(__name__)

BATCH_TASK = "bridge.process_batch"

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
    # Events of one route (across the polled partitions) go out as one task of up to this many.
    batch_max: int = 100
    # While a backlog shows, wait up to this long for more records to fill the batches.
    batch_linger_ms: int = 10
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


class _NotDispatched(Exception):
    """Redis or Kafka failed us (at `where`): the partitions resume from what was not handled."""

    def __init__(self, where: str, cause: BaseException) -> None:
        super().__init__(where, cause)
        self.where = where
        self.cause = cause


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
        self._queue_depths: dict[str, int] = {}
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
        records = self._poll()
        assignment = self.consumer.assignment()
        for tp in [tp for tp in records if tp not in assignment]:  # revoked while we polled
            del records[tp]
        failed = False
        if records:
            try:
                self._dispatch_records(records)
            except _NotDispatched as stop:
                failed = True
                self._failures += 1
                logger.warning(
                    "bridge: %s not dispatched (%s: %s); retrying",
                    stop.where,
                    type(stop.cause).__name__,
                    stop.cause,
                )
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

    def _poll(self) -> dict[TopicPartition, list[Any]]:
        """A poll's records. When a backlog shows (the poll brought more than one record, or a
        worker queue is not empty), wait up to `batch_linger_ms` for more so batches fill; a lone
        event with idle workers is dispatched at once."""
        assert self.consumer is not None
        records = self.consumer.poll(timeout_ms=self.options.poll_timeout_ms)
        count = sum(len(messages) for messages in records.values())
        busy = count > 1 or any(depth > 0 for depth in self._queue_depths.values())
        if count and busy and count < self.options.batch_max and self.options.batch_linger_ms > 0:
            deadline = time.monotonic() + self.options.batch_linger_ms / 1000
            while count < self.options.batch_max and (left := deadline - time.monotonic()) > 0:
                more = self.consumer.poll(
                    timeout_ms=max(int(left * 1000), 1), max_records=self.options.batch_max - count
                )
                for tp, messages in more.items():
                    records.setdefault(tp, []).extend(messages)
                    count += len(messages)
        return records

    def _dispatch_records(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Dead-letter the poison, pack the rest by route (across partitions, in each partition's
        order) into batches of up to `batch_max`, and dispatch them. Each partition's offset moves
        up to its first record not yet handled.

        Raises _NotDispatched when Redis or Kafka is away: every partition is sought back to its
        first record not handled (a record after it that did go out goes out again, which the
        consumers' idempotency absorbs).
        """
        assert self.consumer is not None
        handled: dict[TopicPartition, set[int]] = {tp: set() for tp in records}
        groups: dict[routing.Route, list[tuple[TopicPartition, Any, Envelope]]] = {}
        failure: _NotDispatched | None = None
        for tp, messages in records.items():
            for record in messages:
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
                    if failure is None:
                        try:
                            dead_letter(message, reason=poison.reason, error=str(poison))
                        except TRANSIENT_ERRORS as exc:
                            failure = _NotDispatched(f"{tp.topic}@{tp.partition}:{record.offset}", exc)
                            continue
                        metrics.KAFKA_MESSAGES.labels(topic=record.topic, outcome="dead_lettered").inc()
                        handled[tp].add(record.offset)
                    continue
                groups.setdefault(route, []).append((tp, record, envelope))
        if failure is None:
            for route, items in groups.items():
                for start in range(0, len(items), self.options.batch_max):
                    chunk = items[start : start + self.options.batch_max]
                    try:
                        self._dispatch(route, [(record, envelope) for _, record, envelope in chunk])
                    except TRANSIENT_ERRORS as exc:
                        first = chunk[0][1]
                        failure = _NotDispatched(f"{first.topic}@{first.partition}:{first.offset}", exc)
                        break
                    for tp, record, _ in chunk:
                        handled[tp].add(record.offset)
                if failure is not None:
                    break
        for tp, messages in records.items():
            resume = next((r.offset for r in messages if r.offset not in handled[tp]), None)
            if resume is None:
                self.offsets.done[tp] = messages[-1].offset + 1
                continue
            if resume > messages[0].offset:
                self.offsets.done[tp] = resume
            self.consumer.seek(tp, resume)
        if failure is not None:
            raise failure

    def _dispatch(self, route: routing.Route | None, run: list[tuple[Any, Envelope]]) -> None:
        """One event: its route's tasks, as they are. Several: one `bridge.process_batch` task per
        route task, carrying all of them (see bridge.tasks.process_batch)."""
        assert route is not None
        first, envelope = run[0]
        if len(run) == 1:
            payload = tracing.dispatch_payload(envelope, route.tasks)
            # Bound while dispatching: the log lines below and the tasks' `correlationid` header.
            with correlation.bound(
                envelope.correlation_id or envelope.id, event_id=envelope.id, event_type=envelope.type
            ):
                for task_name in route.tasks:
                    celery_app.send_task(task_name, args=[payload], queue=queue_for_task(task_name))
                logger.info(
                    "dispatched %s@%s:%s to %s",
                    first.topic,
                    first.partition,
                    first.offset,
                    ", ".join(route.tasks),
                )
        else:
            payloads = [tracing.dispatch_payload(envelope, route.tasks) for _, envelope in run]
            for task_name in route.tasks:
                celery_app.send_task(BATCH_TASK, args=[task_name, payloads], queue=queue_for_task(task_name))
            # One line per event, as for a lone one, so each event's correlation id is in the log.
            for record, envelope in run:
                with correlation.bound(
                    envelope.correlation_id or envelope.id, event_id=envelope.id, event_type=envelope.type
                ):
                    logger.info(
                        "dispatched %s@%s:%s to %s (batch of %d)",
                        record.topic,
                        record.partition,
                        record.offset,
                        ", ".join(route.tasks),
                        len(run),
                    )
        metrics.BRIDGE_DISPATCH.inc(len(run) * len(route.tasks))
        for topic, count in Counter(record.topic for record, _ in run).items():  # a batch may span topics
            metrics.KAFKA_MESSAGES.labels(topic=topic, outcome="dispatched").inc(count)

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
        self._queue_depths = depths
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
