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
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis
from celery import current_app as celery_app
from django.conf import settings
from django.db import close_old_connections
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from bridge import admission, routing
from bridge.backpressure import Backpressure, ConsumerLag
from bridge.clients import new_consumer
from bridge.dispatcher import Dispatcher
from bridge.gate import PartitionGate
from bridge.relay import OutboxRelay
from bridge.subscription import PatternSubscription
from core.probes import DEGRADED, DOWN, OK, Heartbeat, HeartbeatPublisher, process_name
from core.queues import queue_for_task

logger = logging.getLogger(__name__)


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
        self.bridge.forget(revoked)

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        # Evicted from the group: a commit would be refused, and the new owner redelivers.
        self.bridge.forget(lost)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        logger.info("bridge assigned %d partitions", len(assigned))


class Bridge:
    """The consume loop: follow the subscription, let the gate resume and skip, hold back for
    backpressure, poll and dispatch, commit, measure the lag."""

    def __init__(self, options: BridgeOptions) -> None:
        self.options = options
        self.offsets = _Offsets()
        self.stopping = threading.Event()
        self.consumer: KafkaConsumer | None = None
        self.subscription: PatternSubscription | None = None
        self.relay: OutboxRelay | None = None
        self.gate = PartitionGate(
            retry_backoff_s=options.retry_backoff_s,
            retry_backoff_max_s=options.retry_backoff_max_s,
            stuck_after_s=options.stuck_after_s,
        )
        self.backpressure = Backpressure(
            redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=2),
            _queues_of,
            max_queue_depth=options.max_queue_depth,
            max_in_flight=options.max_in_flight,
        )
        self.dispatcher = Dispatcher(
            self.gate,
            self.backpressure,
            send_task=celery_app.send_task,
            queue_for_task=queue_for_task,
            batch_max=options.batch_max,
            batch_linger_ms=options.batch_linger_ms,
            batch_linger_max_ms=options.batch_linger_max_ms,
            poll_timeout_ms=options.poll_timeout_ms,
            max_handoff_bytes=options.max_handoff_bytes,
        )
        self.consumer_lag = ConsumerLag()
        self._last_commit = self._last_pressure_check = self._last_lag_check = 0.0
        self._failures = 0
        self.heartbeat = Heartbeat(max_silence_s=options.max_silence_s)
        self.reporter: HeartbeatPublisher | None = None
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._probe_redis = redis.Redis.from_url(
            settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1
        )
        self._redis_down_since: float | None = None

    @property
    def paused(self) -> set[TopicPartition]:
        """The partitions held back because their Celery queue is deep."""
        return self.gate.held

    @property
    def lag(self) -> dict[str, int]:
        return self.consumer_lag.lag

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

    def forget(self, partitions: Iterable[TopicPartition]) -> None:
        """Drop the bridge's state of partitions it no longer owns."""
        for tp in partitions:
            self.offsets.done.pop(tp, None)
            self.offsets.committed.pop(tp, None)
            self.gate.forget(tp)
            self.consumer_lag.forget(tp)

    def _release_assignment(self, gone: set[str]) -> bool:
        """Before the subscription is renewed: commit what was dispatched, forget the partitions.

        Offsets in topics that are `gone` cannot be committed, and nothing is left to redeliver.
        """
        assert self.consumer is not None
        self.forget([tp for tp in self.offsets.done if tp.topic in gone])
        self.commit()
        if self.offsets.pending():
            return False
        self.forget(self.consumer.assignment())
        return True

    # --- health (the probe's thread) -----------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The consume loop's liveness for /healthz."""
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
        return self.gate.partitions_health()

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
                "waiting_partitions": self.gate.waiting_partitions(),
            }
        self._redis_down_since = None
        return {"status": OK, "latency_ms": round((time.monotonic() - started) * 1000, 1)}

    def relay_health(self) -> dict[str, Any]:
        if self.relay is None:
            return {"status": "ok", "detail": "relay not run by this bridge (--no-relay)"}
        return self.relay.health()

    # --- reports for the web /health and operators (the reporter thread) -------------------------

    def _report_details(self) -> dict[str, Any]:
        return {
            "group": self.options.group_id,
            "assigned_partitions": len(self._assigned),
            "lag": dict(self.lag),
            "stuck": [s.as_dict() for s in self.gate.stuck_partitions()],
        }

    def _report_stuck(self) -> None:
        """Keep this bridge's StuckPartition rows in step, and pick up operators' skip requests."""
        self.gate.report(self.options.group_id, self._assigned)

    # --- the loop ------------------------------------------------------------------------------

    def _step(self) -> None:
        assert self.consumer is not None
        self.heartbeat.beat()
        if self.subscription is not None:
            self.subscription.follow()
        self._assigned = frozenset(self.consumer.assignment())
        self.gate.apply_skip_requests(self.consumer, self._assigned, self._skip_to)
        self.gate.resume_due(self.consumer, self._assigned)
        now = time.monotonic()
        if now - self._last_pressure_check >= self.options.backpressure_check_s:
            self._last_pressure_check = now
            self._apply_backpressure()
        records = self.dispatcher.poll(self.consumer, self._assigned)
        assignment = self.consumer.assignment()
        for tp in [tp for tp in records if tp not in assignment]:  # revoked while we polled
            del records[tp]
        if records:
            if self.dispatcher.dispatch_records(self.consumer, records, self.offsets.done):
                self._failures += 1
                close_old_connections()
            else:
                self._failures = 0
        self.gate.stuck_partitions()  # moves the gauge even while nobody scrapes /healthz
        now = time.monotonic()
        if now - self._last_commit >= self.options.commit_interval_s:
            self.commit()
        if now - self._last_lag_check >= self.options.lag_check_s:
            self._last_lag_check = now
            self.consumer_lag.record(self.consumer, self.offsets.committed)

    def _apply_backpressure(self) -> None:
        """Pause partitions whose Celery queue is deeper than the bound; resume below half of it."""
        assert self.consumer is not None
        hold = self.backpressure.partitions_to_hold(self.consumer.assignment())
        if hold is not None:
            self.gate.hold(self.consumer, hold, why=f"queues deep: {self.backpressure.queue_depths}")

    def _skip_to(self, tp: TopicPartition, offset: int) -> None:
        """Move `tp` past a record an operator skipped, and commit that at once."""
        assert self.consumer is not None
        self.offsets.done[tp] = offset
        self.consumer.seek(tp, offset)
        self.commit([tp])

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


def _queues_of(topic: str) -> set[str]:
    """The Celery queues the tasks of `topic`'s route go to."""
    route = routing.route_for(topic)
    return {queue_for_task(name) for name in route.tasks} if route else set()


def _redacted(url: str) -> str:
    """A broker URL without its password, fit for a health answer."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.split("@", 1)[1]
    return scheme + sep + rest
