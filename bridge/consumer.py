"""The Kafka -> Celery bridge: consume, validate, dispatch, commit; dead-letter what is poison.

Delivery is at-least-once and never skips: a partition's offset is committed only up to the last
message that is safely on the Redis broker (or in its dead-letter topic). When Redis, Kafka or
PostgreSQL is away, the failing message is sought back to and retried with backoff; consumers
are idempotent, so redelivery after a crash has its effect once.

No record blocks more than its own partition: a partition whose next record fails to go out is
paused and retried on its own with backoff (one record at a time) while the others flow. A record
too large to hand on goes to the DLQ as a reference (bridge.deadletters). One that still cannot
get past for BRIDGE_STUCK_AFTER_S is reported stuck: `/healthz` 503 naming it,
`bridge_partition_stuck` 1, a StuckPartition row for the web `/health` and for operators, who may
skip it to the DLQ from the admin (the bridge picks the request up here).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.utils import timezone
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import admission, codec, routing
from bridge.clients import new_consumer
from bridge.codec import Envelope
from bridge.deadletters import dead_letter
from bridge.models import StuckPartition
from bridge.relay import OutboxRelay
from bridge.subscription import PatternSubscription
from core import correlation, metrics, tracing
from core.logs import safe_error
from core.probes import DEGRADED, DOWN, OK, Heartbeat, HeartbeatPublisher, process_name
from kafka_platform.celery import app as celery_app
from kafka_platform.celery import queue_for_task

logger = logging.getLogger(__name__)
# Kombu's Redis transport keeps a worker's prefetched, not yet acknowledged tasks in this hash.
UNACKED_KEY = "unacked"

BATCH_TASK = "bridge.process_batch"
SKIPPED_BY_OPERATOR = "skipped_by_operator"
TOO_LARGE = "too_large"

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
    # Natural batching: while the workers still hold at least `max_in_flight` tasks (queued or
    # prefetched), keep gathering for up to `batch_linger_max_ms` in all, so that a stream under
    # load leaves in fewer, larger batches; an event alone with idle workers goes at once.
    max_in_flight: int = 0  # off unless set (BRIDGE_MAX_IN_FLIGHT)
    batch_linger_max_ms: int = 100
    # /healthz turns 503 when the consume loop (or the relay's) has not turned for this long.
    max_silence_s: float = 60.0
    # ... or when a partition has not got past a record for this long (it is "stuck").
    stuck_after_s: float = 60.0
    # Records with larger values are not handed to Celery: they go to the DLQ as references.
    max_handoff_bytes: int = 10 * 1024 * 1024
    # How often the heartbeat and the stuck partitions are published for the web /health.
    report_interval_s: float = 2.0


@dataclass
class _Offsets:
    """Next offset to commit per partition, and what was last committed."""

    done: dict[TopicPartition, int] = field(default_factory=dict)
    committed: dict[TopicPartition, int] = field(default_factory=dict)

    def pending(self, partitions: Iterable[TopicPartition] | None = None) -> dict[TopicPartition, int]:
        keys = self.done.keys() if partitions is None else [p for p in partitions if p in self.done]
        return {tp: self.done[tp] for tp in keys if self.committed.get(tp) != self.done[tp]}


@dataclass
class _Blocked:
    """A partition whose record at `offset` failed to go out: paused, retried with backoff."""

    offset: int
    message: codec.IncomingMessage
    error: str
    since: float  # monotonic, first failure at this offset
    since_at: float  # the same as a Unix time, for reports
    attempts: int = 1
    retry_at: float = 0.0


@dataclass(frozen=True)
class _InHand:
    """Records being handed to Redis right now (a paused Redis blocks the call for its duration)."""

    since: float
    since_at: float
    partitions: dict[TopicPartition, int]


@dataclass(frozen=True)
class _Stuck:
    topic: str
    partition: int
    offset: int
    error: str
    since_at: float
    stuck_for_s: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "error": self.error,
            "since": datetime.fromtimestamp(self.since_at, UTC).isoformat(),
            "stuck_for_s": round(self.stuck_for_s, 1),
        }


@dataclass(frozen=True)
class _SkipRequest:
    row_id: int
    offset: int
    requested_by: str


@dataclass(frozen=True)
class _Item:
    tp: TopicPartition
    record: Any
    envelope: Envelope
    message: codec.IncomingMessage


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
        bridge.forget_blocked(tp)
        bridge.lag.pop(f"{tp.topic}:{tp.partition}", None)
        # The partition's new owner reports its lag; a stale value here would hide recovery.
        try:
            metrics.BRIDGE_CONSUMER_LAG.remove(tp.topic, str(tp.partition))
        except KeyError:
            pass  # never measured here


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
        self.lag: dict[str, int] = {}
        self.reporter: HeartbeatPublisher | None = None
        # Partitions whose next record failed to go out, and those of them paused until retry_at.
        self._blocked: dict[TopicPartition, _Blocked] = {}
        self._retry_paused: set[TopicPartition] = set()
        self._in_hand: _InHand | None = None
        self._assigned: frozenset[TopicPartition] = frozenset()
        # Read and written by the probe and reporter threads too.
        self._state_lock = threading.Lock()
        self._gauged_stuck: set[TopicPartition] = set()
        self._skip_requests: dict[TopicPartition, _SkipRequest] = {}
        self._probe_redis = redis.Redis.from_url(
            settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1
        )
        self._redis_down_since: float | None = None
        self._report_warned = False

    # --- lifecycle -----------------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        def _stop(signum: int, frame: Any) -> None:
            logger.info("bridge: signal %s, finishing in-flight work", signum)
            self.stopping.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)

    def run(self) -> None:
        admission.trusted_inputs()  # a wrong KAFKA_TRUSTED_INPUTS stops the bridge before it reads
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
        self.reporter = HeartbeatPublisher(
            kind="bridge",
            name=process_name(),
            heartbeat=self.heartbeat,
            redis_url=settings.CELERY_BROKER_URL,
            interval_s=self.options.report_interval_s,
            # A killed bridge's key lingers this long (reported stale), then it is gone.
            ttl_s=max(5 * self.options.max_silence_s, 60.0),
            details=self._report_details,
            also=self._report_stuck,
        )
        self.reporter.start()
        logger.info("bridge consuming %s as group %s", routing.subscription_pattern(), self.options.group_id)
        try:
            while not self.stopping.is_set():
                self._step()
        finally:
            self.reporter.stop()
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

    def partitions_health(self) -> dict[str, Any]:
        """For /healthz: `stuck` (503) while a partition has not got past a record for
        BRIDGE_STUCK_AFTER_S; the partitions still retrying are listed too."""
        stuck = self.stuck_partitions()
        stuck_keys = {(s.topic, s.partition) for s in stuck}
        now = time.monotonic()
        retrying = [
            {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": b.offset,
                "attempts": b.attempts,
                "error": b.error,
                "failing_for_s": round(now - b.since, 1),
            }
            for tp, b in list(self._blocked.items())
            if (tp.topic, tp.partition) not in stuck_keys
        ]
        return {
            "status": "stuck" if stuck else OK,
            "stuck": [s.as_dict() for s in stuck],
            "retrying": retrying,
            "stuck_after_s": self.options.stuck_after_s,
        }

    def redis_health(self) -> dict[str, Any]:
        """For /healthz: can the bridge reach its Celery broker? While it cannot, names Redis and
        the partitions waiting on it: `degraded` at first, `down` (503) once that has lasted
        HEALTH_MAX_SILENCE_S."""
        started = time.monotonic()
        try:
            self._probe_redis.ping()
        except redis.exceptions.RedisError as exc:
            if self._redis_down_since is None:
                self._redis_down_since = started
            down_for = time.monotonic() - self._redis_down_since
            return {
                "status": DOWN if down_for >= self.options.max_silence_s else DEGRADED,
                "error": f"{type(exc).__name__}: {exc}",
                "broker": _redacted(settings.CELERY_BROKER_URL),
                "unreachable_for_s": round(down_for, 1),
                "waiting_partitions": self.waiting_partitions(),
            }
        self._redis_down_since = None
        return {"status": OK, "latency_ms": round((time.monotonic() - started) * 1000, 1)}

    def waiting_partitions(self) -> list[dict[str, Any]]:
        """Partitions whose next record is being handed on, or failed to be."""
        waiting: dict[tuple[str, int], dict[str, Any]] = {}
        in_hand = self._in_hand
        if in_hand is not None:
            for tp, offset in in_hand.partitions.items():
                waiting[(tp.topic, tp.partition)] = {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": offset,
                    "waiting_s": round(time.monotonic() - in_hand.since, 1),
                }
        for tp, b in list(self._blocked.items()):
            waiting[(tp.topic, tp.partition)] = {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": b.offset,
                "waiting_s": round(time.monotonic() - b.since, 1),
            }
        return sorted(waiting.values(), key=lambda w: (w["topic"], w["partition"]))

    def stuck_partitions(self) -> list[_Stuck]:
        """Partitions that have not got past a record for BRIDGE_STUCK_AFTER_S (failing, or in a
        hand-off that has not returned); keeps `bridge_partition_stuck` in step. Any thread."""
        now = time.monotonic()
        after = self.options.stuck_after_s
        found: dict[TopicPartition, _Stuck] = {}
        in_hand = self._in_hand
        if in_hand is not None and now - in_hand.since >= after:
            for tp, offset in in_hand.partitions.items():
                found[tp] = _Stuck(
                    tp.topic,
                    tp.partition,
                    offset,
                    "hand-off to Celery (Redis) has not returned",
                    in_hand.since_at,
                    now - in_hand.since,
                )
        for tp, b in list(self._blocked.items()):
            if now - b.since >= after:
                found[tp] = _Stuck(tp.topic, tp.partition, b.offset, b.error, b.since_at, now - b.since)
        with self._state_lock:
            for tp in set(found) - self._gauged_stuck:
                metrics.BRIDGE_PARTITION_STUCK.labels(topic=tp.topic, partition=str(tp.partition)).set(1)
                logger.error(
                    "bridge: partition %s@%s stuck at offset %s for %.0fs: %s",
                    tp.topic,
                    tp.partition,
                    found[tp].offset,
                    found[tp].stuck_for_s,
                    found[tp].error,
                )
            for tp in self._gauged_stuck - set(found):
                metrics.BRIDGE_PARTITION_STUCK.labels(topic=tp.topic, partition=str(tp.partition)).set(0)
                logger.info("bridge: partition %s@%s moves again", tp.topic, tp.partition)
            self._gauged_stuck = set(found)
        return sorted(found.values(), key=lambda s: (s.topic, s.partition))

    def forget_blocked(self, tp: TopicPartition) -> None:
        """A partition gone to another bridge: its blocked state and stuck gauge go too."""
        self._blocked.pop(tp, None)
        self._retry_paused.discard(tp)
        with self._state_lock:
            self._skip_requests.pop(tp, None)
            if tp in self._gauged_stuck:
                self._gauged_stuck.discard(tp)
                metrics.BRIDGE_PARTITION_STUCK.remove(tp.topic, str(tp.partition))

    # --- reports for the web /health and operators (the reporter thread) -------------------------

    def _report_details(self) -> dict[str, Any]:
        return {
            "group": self.options.group_id,
            "assigned_partitions": len(self._assigned),
            "lag": dict(self.lag),
            "stuck": [s.as_dict() for s in self.stuck_partitions()],
        }

    def _report_stuck(self) -> None:
        """Keep this bridge's StuckPartition rows in step, and pick up operators' skip requests."""
        stuck = {(s.topic, s.partition): s for s in self.stuck_partitions()}
        assigned = {(tp.topic, tp.partition) for tp in self._assigned}
        group = self.options.group_id
        try:
            now = timezone.now()
            rows = {(r.topic, r.partition): r for r in StuckPartition.objects.filter(group=group)}
            for key, s in stuck.items():
                row = rows.get(key)
                fields = {
                    "offset": s.offset,
                    "error": s.error[:4000],
                    "stuck_since": datetime.fromtimestamp(s.since_at, UTC),
                    "reported_at": now,
                    "reported_by": process_name(),
                }
                if row is None:
                    StuckPartition.objects.create(group=group, topic=s.topic, partition=s.partition, **fields)
                    continue
                if row.offset != s.offset:  # a request to skip another record is void
                    fields.update(skip_requested_at=None, skip_requested_by="")
                StuckPartition.objects.filter(pk=row.pk).update(**fields)
                if row.skip_requested_at is not None and row.offset == s.offset:
                    with self._state_lock:
                        self._skip_requests[TopicPartition(s.topic, s.partition)] = _SkipRequest(
                            row.pk, row.offset, row.skip_requested_by
                        )
            moved_on = [row.pk for key, row in rows.items() if key in assigned and key not in stuck]
            if moved_on:
                StuckPartition.objects.filter(pk__in=moved_on).delete()
            self._report_warned = False
        except DatabaseError as exc:
            if not self._report_warned:
                logger.warning("bridge: stuck partitions not reported: %s", exc)
                self._report_warned = True
            connection.close()

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
        self._assigned = frozenset(self.consumer.assignment())
        self._apply_skip_requests()
        self._resume_due_retries()
        now = time.monotonic()
        if now - self._last_pressure_check >= self.options.backpressure_check_s:
            self._last_pressure_check = now
            self._apply_backpressure()
        records = self._poll()
        assignment = self.consumer.assignment()
        for tp in [tp for tp in records if tp not in assignment]:  # revoked while we polled
            del records[tp]
        if records:
            if self._dispatch_records(records):
                self._failures += 1
                close_old_connections()
            else:
                self._failures = 0
        self.stuck_partitions()  # moves the gauge even while nobody scrapes /healthz
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
            start = time.monotonic()
            deadline = start + self.options.batch_linger_ms / 1000
            longest = start + max(self.options.batch_linger_max_ms, self.options.batch_linger_ms) / 1000
            while count < self.options.batch_max:
                left = deadline - time.monotonic()
                if left <= 0:
                    # The workers are still busy with earlier batches: what arrives meanwhile
                    # would only wait in their queue, so it waits here and leaves as one batch.
                    if time.monotonic() >= longest or not self._workers_busy():
                        break
                    deadline = min(longest, time.monotonic() + self.options.batch_linger_ms / 1000)
                    continue
                more = self.consumer.poll(
                    timeout_ms=max(int(left * 1000), 1), max_records=self.options.batch_max - count
                )
                for tp, messages in more.items():
                    records.setdefault(tp, []).extend(messages)
                    count += len(messages)
        return records

    def _workers_busy(self) -> bool:
        """Do the workers hold at least `max_in_flight` tasks (queued in Redis, or prefetched and
        not yet acknowledged)? Unknown (Redis away) counts as not busy: nothing waits for it."""
        if self.options.max_in_flight <= 0:
            return False
        queues = sorted({q for tp in self._assigned for q in self._queues_of(tp.topic)})
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for queue in queues:
                    pipe.llen(queue)
                pipe.hlen(UNACKED_KEY)
                counts = pipe.execute()
        except redis.exceptions.RedisError:
            return False
        return sum(counts) >= self.options.max_in_flight

    def _dispatch_records(self, records: dict[TopicPartition, list[Any]]) -> bool:
        """Dead-letter the poison, pack the rest by route (across partitions, in each partition's
        order) into batches of up to `batch_max`, and dispatch them. Each partition's offset moves
        up to its first record not yet handled. Returns whether something failed.

        When a record (or a batch) fails to go out, its partitions are sought back to it and paused
        for a backoff (`_block`); nothing more is tried in this step, and the partitions not reached
        are sought back to be polled again at once, so Redis or Kafka being away costs one failure
        per step while the partitions that are fine keep flowing. A partition being retried goes
        one record at a time, so that a batch-mate's failure cannot hold it.
        """
        assert self.consumer is not None
        handled: dict[TopicPartition, set[int]] = {tp: set() for tp in records}
        failed: dict[TopicPartition, tuple[int, BaseException, codec.IncomingMessage]] = {}
        groups: dict[routing.Route, list[_Item]] = {}
        singles: list[tuple[routing.Route, _Item]] = []

        def to_dlq(tp: TopicPartition, message: codec.IncomingMessage, **kwargs: Any) -> bool:
            try:
                dead_letter(message, **kwargs)
            except TRANSIENT_ERRORS as exc:
                failed[tp] = (message.offset, exc, message)
                return False
            metrics.KAFKA_MESSAGES.labels(topic=message.topic, outcome="dead_lettered").inc()
            handled[tp].add(message.offset)
            return True

        for tp, messages in records.items():
            for record in messages:
                if failed:
                    break
                message = codec.IncomingMessage(
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers or []),
                )
                try:
                    envelope, route = routing.validate(admission.admit(message, codec.decode(message)))
                except codec.PoisonMessage as poison:
                    to_dlq(tp, message, reason=poison.reason, error=str(poison))
                    continue
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:  # noqa: BLE001 - one record's surprise is its dead letter, never the bridge's exit
                    logger.exception("unexpected error validating %s", message.fallback_id)
                    to_dlq(tp, message, reason="schema_violation", error=safe_error(exc))
                    continue
                size = len(record.value or b"")
                if size > self.options.max_handoff_bytes:
                    to_dlq(
                        tp,
                        message,
                        reason=TOO_LARGE,
                        error=(
                            f"record of {size} bytes exceeds BRIDGE_MAX_HANDOFF_BYTES "
                            f"({self.options.max_handoff_bytes}): not handed to Celery"
                        ),
                        as_reference=True,
                    )
                    continue
                item = _Item(tp, record, envelope, message)
                if tp in self._blocked:
                    singles.append((route, item))
                else:
                    groups.setdefault(route, []).append(item)
        in_hand = {tp: messages[0].offset for tp, messages in records.items()}
        self._in_hand = _InHand(time.monotonic(), time.time(), in_hand)
        try:
            for route, item in singles:
                if failed:
                    break
                try:
                    self._dispatch(route, [(item.record, item.envelope)])
                except TRANSIENT_ERRORS as exc:
                    failed[item.tp] = (item.record.offset, exc, item.message)
                    break
                handled[item.tp].add(item.record.offset)
            for route, items in groups.items():
                for start in range(0, len(items), self.options.batch_max):
                    if failed:
                        break
                    chunk = items[start : start + self.options.batch_max]
                    try:
                        self._dispatch(route, [(item.record, item.envelope) for item in chunk])
                    except TRANSIENT_ERRORS as exc:
                        for item in chunk:  # which of them Redis refused is not known: all retry
                            failed.setdefault(item.tp, (item.record.offset, exc, item.message))
                        break
                    for item in chunk:
                        handled[item.tp].add(item.record.offset)
        finally:
            self._in_hand = None
        for tp, messages in records.items():
            resume = next((r.offset for r in messages if r.offset not in handled[tp]), None)
            if resume is None:
                self.offsets.done[tp] = messages[-1].offset + 1
            else:
                if resume > messages[0].offset:
                    self.offsets.done[tp] = resume
                self.consumer.seek(tp, resume)
            blocked = self._blocked.get(tp)
            if blocked is not None and self.offsets.done.get(tp, -1) > blocked.offset:
                self._unblock(tp)
        for tp, (offset, error, message) in failed.items():
            self._block(tp, offset, error, message)
        return bool(failed)

    def _block(
        self, tp: TopicPartition, offset: int, exc: BaseException, message: codec.IncomingMessage
    ) -> None:
        """Pause `tp` at the record that failed; it is retried after a backoff that grows with
        each failure at that offset (`_resume_due_retries`)."""
        assert self.consumer is not None
        now = time.monotonic()
        error = f"{type(exc).__name__}: {exc}"
        blocked = self._blocked.get(tp)
        if blocked is None or blocked.offset != offset:
            blocked = _Blocked(offset, message, error, since=now, since_at=time.time())
            self._blocked[tp] = blocked
        else:
            blocked.attempts += 1
            blocked.error, blocked.message = error, message
        delay = min(
            self.options.retry_backoff_s * 2 ** min(blocked.attempts - 1, 8), self.options.retry_backoff_max_s
        )
        blocked.retry_at = now + delay
        self.consumer.pause(tp)
        self._retry_paused.add(tp)
        logger.warning(
            "bridge: %s@%s:%s not handed on (%s); partition retried in %.1fs (attempt %d)",
            tp.topic,
            tp.partition,
            offset,
            error,
            delay,
            blocked.attempts,
        )

    def _unblock(self, tp: TopicPartition) -> None:
        assert self.consumer is not None
        self._blocked.pop(tp, None)
        if tp in self._retry_paused:
            self._retry_paused.discard(tp)
            if tp not in self.paused:
                self.consumer.resume(tp)

    def _resume_due_retries(self) -> None:
        assert self.consumer is not None
        now = time.monotonic()
        for tp in list(self._retry_paused):
            blocked = self._blocked.get(tp)
            if blocked is None or blocked.retry_at <= now:
                self._retry_paused.discard(tp)
                if tp not in self.paused and tp in self._assigned:
                    self.consumer.resume(tp)

    def _apply_skip_requests(self) -> None:
        """An operator asked (admin) to skip a stuck partition's record: dead-letter it with
        dlq-reason `skipped_by_operator` and seek past it."""
        assert self.consumer is not None
        with self._state_lock:
            requests, self._skip_requests = self._skip_requests, {}
        for tp, request in requests.items():
            blocked = self._blocked.get(tp)
            if blocked is None or blocked.offset != request.offset or tp not in self._assigned:
                continue  # moved on meanwhile, or no longer ours: the request is void
            try:
                dead_letter(
                    blocked.message,
                    reason=SKIPPED_BY_OPERATOR,
                    error=(
                        f"skipped by {request.requested_by or 'an operator'} after {blocked.attempts} "
                        f"failed attempts: {blocked.error}"
                    ),
                )
            except TRANSIENT_ERRORS as exc:
                logger.warning(
                    "bridge: skip of %s@%s:%s failed (%s); will retry",
                    tp.topic,
                    tp.partition,
                    request.offset,
                    exc,
                )
                with self._state_lock:
                    self._skip_requests.setdefault(tp, request)
                continue
            metrics.KAFKA_MESSAGES.labels(topic=tp.topic, outcome="dead_lettered").inc()
            self.offsets.done[tp] = blocked.offset + 1
            self.consumer.seek(tp, blocked.offset + 1)
            self._unblock(tp)
            self.commit([tp])
            try:
                StuckPartition.objects.filter(pk=request.row_id).delete()
            except DatabaseError as exc:  # the reporter deletes it on its next turn
                logger.warning("bridge: stuck partition row not deleted: %s", exc)
            logger.warning(
                "bridge: %s@%s:%s skipped to the DLQ at the request of %s",
                tp.topic,
                tp.partition,
                request.offset,
                request.requested_by,
            )

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
        if self.paused - to_pause - self._retry_paused:
            # A partition waiting for its retry stays paused (`_resume_due_retries` resumes it).
            self.consumer.resume(*(self.paused - to_pause - self._retry_paused))
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
            lag = max(end - committed, 0)
            metrics.BRIDGE_CONSUMER_LAG.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)
            self.lag[f"{tp.topic}:{tp.partition}"] = lag


def _redacted(url: str) -> str:
    """A broker URL without its password, fit for a health answer."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
