"""Which of the bridge's partitions flow: paused ones, blocked ones retried with backoff, stuck ones.

A partition is held back for one of two reasons: its Celery queue is deep (backpressure holds it)
or its next record failed to go out (it is blocked, and retried alone after a backoff that grows
with each failure at that offset). It flows again once neither holds. A blocked partition that
has not got past its record for `stuck_after_s`, or one whose hand-off to Redis has not returned
for that long, is stuck: `bridge_partition_stuck` 1, a StuckPartition row for the web `/health`
and for operators, who may ask (admin) to skip its record to the DLQ.

Kept by the consume loop's thread; the stuck view, the skip requests and the reports are read
and written by the probe and reporter threads too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import redis
from django.db import DatabaseError, connection
from django.utils import timezone
from kafka import TopicPartition
from kafka.errors import KafkaError
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import codec
from bridge.deadletters import dead_letter
from bridge.models import StuckPartition
from core import metrics
from core.backoff import backoff_delay
from core.probes import OK, process_name

logger = logging.getLogger(__name__)

SKIPPED_BY_OPERATOR = "skipped_by_operator"

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


class Pausable(Protocol):
    """The part of KafkaConsumer the gate drives."""

    def pause(self, *partitions: TopicPartition) -> None: ...

    def resume(self, *partitions: TopicPartition) -> None: ...


@dataclass
class Blocked:
    """A partition whose record at `offset` failed to go out: paused, retried with backoff."""

    offset: int
    message: codec.IncomingMessage
    error: str
    since: float  # monotonic, first failure at this offset
    since_at: float  # the same as a Unix time, for reports
    attempts: int = 1
    retry_at: float = 0.0


@dataclass(frozen=True)
class InHand:
    """Records being handed to Redis right now (a paused Redis blocks the call for its duration)."""

    since: float
    since_at: float
    partitions: dict[TopicPartition, int]


@dataclass(frozen=True)
class Stuck:
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
class SkipRequest:
    row_id: int
    offset: int
    requested_by: str


class PartitionGate:
    def __init__(self, *, retry_backoff_s: float, retry_backoff_max_s: float, stuck_after_s: float) -> None:
        self.retry_backoff_s = retry_backoff_s
        self.retry_backoff_max_s = retry_backoff_max_s
        self.stuck_after_s = stuck_after_s
        # Partitions paused because their Celery queue is deep.
        self.held: set[TopicPartition] = set()
        # Partitions whose next record failed to go out, and those of them paused until retry_at.
        self.blocked: dict[TopicPartition, Blocked] = {}
        self.retry_paused: set[TopicPartition] = set()
        self.in_hand: InHand | None = None
        self._state_lock = threading.Lock()
        self._gauged_stuck: set[TopicPartition] = set()
        self._skip_requests: dict[TopicPartition, SkipRequest] = {}
        self._report_warned = False

    # --- holding back for backpressure -------------------------------------------------------

    def hold(self, consumer: Pausable, partitions: set[TopicPartition], why: str) -> None:
        """Keep exactly `partitions` paused for backpressure; the rest of those it held flow
        again, unless they wait for a retry (`resume_due` resumes those)."""
        if partitions - self.held:
            logger.info("bridge: pausing %d partitions, %s", len(partitions - self.held), why)
            consumer.pause(*(partitions - self.held))
        if self.held - partitions - self.retry_paused:
            consumer.resume(*(self.held - partitions - self.retry_paused))
        self.held = partitions

    # --- blocked partitions and their retries --------------------------------------------------

    def block(
        self,
        consumer: Pausable,
        tp: TopicPartition,
        offset: int,
        exc: BaseException,
        message: codec.IncomingMessage,
    ) -> None:
        """Pause `tp` at the record that failed; it is retried after a backoff that grows with
        each failure at that offset (`resume_due`)."""
        now = time.monotonic()
        error = f"{type(exc).__name__}: {exc}"
        blocked = self.blocked.get(tp)
        if blocked is None or blocked.offset != offset:
            blocked = Blocked(offset, message, error, since=now, since_at=time.time())
            self.blocked[tp] = blocked
        else:
            blocked.attempts += 1
            blocked.error, blocked.message = error, message
        delay = backoff_delay(
            blocked.attempts - 1, first=self.retry_backoff_s, cap=self.retry_backoff_max_s, max_doublings=8
        )
        blocked.retry_at = now + delay
        consumer.pause(tp)
        self.retry_paused.add(tp)
        logger.warning(
            "bridge: %s@%s:%s not handed on (%s); partition retried in %.1fs (attempt %d)",
            tp.topic,
            tp.partition,
            offset,
            error,
            delay,
            blocked.attempts,
        )

    def is_blocked(self, tp: TopicPartition) -> bool:
        return tp in self.blocked

    def moved_to(self, consumer: Pausable, tp: TopicPartition, done: int | None) -> None:
        """`tp` is done up to `done`: past its blocking record, it is no longer blocked."""
        blocked = self.blocked.get(tp)
        if blocked is not None and (done if done is not None else -1) > blocked.offset:
            self.unblock(consumer, tp)

    def unblock(self, consumer: Pausable, tp: TopicPartition) -> None:
        self.blocked.pop(tp, None)
        if tp in self.retry_paused:
            self.retry_paused.discard(tp)
            if tp not in self.held:
                consumer.resume(tp)

    def resume_due(self, consumer: Pausable, assigned: frozenset[TopicPartition]) -> None:
        """Resume the blocked partitions whose backoff is over, to retry their record."""
        now = time.monotonic()
        for tp in list(self.retry_paused):
            blocked = self.blocked.get(tp)
            if blocked is None or blocked.retry_at <= now:
                self.retry_paused.discard(tp)
                if tp not in self.held and tp in assigned:
                    consumer.resume(tp)

    @contextmanager
    def handing_off(self, partitions: dict[TopicPartition, int]) -> Iterator[None]:
        """Records of `partitions` (from these offsets) are being handed to Redis meanwhile."""
        self.in_hand = InHand(time.monotonic(), time.time(), partitions)
        try:
            yield
        finally:
            self.in_hand = None

    def forget(self, tp: TopicPartition) -> None:
        """A partition gone to another bridge: its held and blocked state and stuck gauge go too."""
        self.held.discard(tp)
        self.blocked.pop(tp, None)
        self.retry_paused.discard(tp)
        with self._state_lock:
            self._skip_requests.pop(tp, None)
            if tp in self._gauged_stuck:
                self._gauged_stuck.discard(tp)
                metrics.BRIDGE_PARTITION_STUCK.remove(tp.topic, str(tp.partition))

    # --- what is stuck (any thread) ------------------------------------------------------------

    def waiting_partitions(self) -> list[dict[str, Any]]:
        """Partitions whose next record is being handed on, or failed to be."""
        waiting: dict[tuple[str, int], dict[str, Any]] = {}
        in_hand = self.in_hand
        if in_hand is not None:
            for tp, offset in in_hand.partitions.items():
                waiting[(tp.topic, tp.partition)] = {
                    "topic": tp.topic,
                    "partition": tp.partition,
                    "offset": offset,
                    "waiting_s": round(time.monotonic() - in_hand.since, 1),
                }
        for tp, b in list(self.blocked.items()):
            waiting[(tp.topic, tp.partition)] = {
                "topic": tp.topic,
                "partition": tp.partition,
                "offset": b.offset,
                "waiting_s": round(time.monotonic() - b.since, 1),
            }
        return sorted(waiting.values(), key=lambda w: (w["topic"], w["partition"]))

    def stuck_partitions(self) -> list[Stuck]:
        """Partitions that have not got past a record for `stuck_after_s` (failing, or in a
        hand-off that has not returned); keeps `bridge_partition_stuck` in step."""
        now = time.monotonic()
        after = self.stuck_after_s
        found: dict[TopicPartition, Stuck] = {}
        in_hand = self.in_hand
        if in_hand is not None and now - in_hand.since >= after:
            for tp, offset in in_hand.partitions.items():
                found[tp] = Stuck(
                    tp.topic,
                    tp.partition,
                    offset,
                    "hand-off to Celery (Redis) has not returned",
                    in_hand.since_at,
                    now - in_hand.since,
                )
        for tp, b in list(self.blocked.items()):
            if now - b.since >= after:
                found[tp] = Stuck(tp.topic, tp.partition, b.offset, b.error, b.since_at, now - b.since)
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

    def partitions_health(self) -> dict[str, Any]:
        """For /healthz: `stuck` (503) while a partition has not got past a record for
        `stuck_after_s`; the partitions still retrying are listed too."""
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
            for tp, b in list(self.blocked.items())
            if (tp.topic, tp.partition) not in stuck_keys
        ]
        return {
            "status": "stuck" if stuck else OK,
            "stuck": [s.as_dict() for s in stuck],
            "retrying": retrying,
            "stuck_after_s": self.stuck_after_s,
        }

    # --- operators: the StuckPartition rows and their skip requests ----------------------------

    def report(self, group: str, assigned: Iterable[TopicPartition]) -> None:
        """Keep this bridge's StuckPartition rows in step, and pick up operators' skip requests
        (the reporter thread)."""
        stuck = {(s.topic, s.partition): s for s in self.stuck_partitions()}
        ours = {(tp.topic, tp.partition) for tp in assigned}
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
                        self._skip_requests[TopicPartition(s.topic, s.partition)] = SkipRequest(
                            row.pk, row.offset, row.skip_requested_by
                        )
            moved_on = [row.pk for key, row in rows.items() if key in ours and key not in stuck]
            if moved_on:
                StuckPartition.objects.filter(pk__in=moved_on).delete()
            self._report_warned = False
        except DatabaseError as exc:
            if not self._report_warned:
                logger.warning("bridge: stuck partitions not reported: %s", exc)
                self._report_warned = True
            connection.close()

    def apply_skip_requests(
        self,
        consumer: Pausable,
        assigned: frozenset[TopicPartition],
        skip_to: Callable[[TopicPartition, int], None],
    ) -> None:
        """An operator asked (admin) to skip a stuck partition's record: dead-letter it with
        dlq-reason `skipped_by_operator`, and `skip_to` the offset past it (the loop seeks there
        and commits it)."""
        with self._state_lock:
            requests, self._skip_requests = self._skip_requests, {}
        for tp, request in requests.items():
            blocked = self.blocked.get(tp)
            if blocked is None or blocked.offset != request.offset or tp not in assigned:
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
            skip_to(tp, blocked.offset + 1)
            self.unblock(consumer, tp)
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
