"""From polled records to Celery tasks: poll (lingering for fuller batches), admit, filter, batch
by route, send.

A record that cannot be admitted (poison, or too large to hand on) goes to the DLQ. Each route
task whose consumer's filter (bridge.consumers.Consumer.accepts) refuses a record gets no task
for it; a record that no task of its route wants is handed on at once, as if it had gone out.
The rest are packed by route, across partitions and in each partition's order, into batches of up
to `batch_max`: each task of the route gets the batch's events it wants, one as itself, several
as one `bridge.process_batch` task. Each partition's offset moves up to its first record not yet
handed on; one whose record failed to go out is blocked (bridge.gate) and retried alone.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import TopicPartition

from bridge import admission, codec, routing
from bridge.codec import Envelope
from bridge.deadletters import dead_letter
from bridge.gate import TRANSIENT_ERRORS, PartitionGate, Pausable
from core import correlation, metrics, tracing
from core.logs import safe_error

logger = logging.getLogger(__name__)

BATCH_TASK = "bridge.process_batch"
TOO_LARGE = "too_large"


class Consuming(Pausable, Protocol):
    """The part of KafkaConsumer the dispatcher uses."""

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[Any]]: ...

    def seek(self, partition: TopicPartition, offset: int) -> None: ...


class SendTask(Protocol):
    """Celery's `app.send_task`, as far as the dispatcher calls it."""

    def __call__(self, name: str, *, args: list[Any], queue: str) -> Any: ...


class Load(Protocol):
    """What the dispatcher asks about the workers (bridge.backpressure.Backpressure)."""

    def backlog(self) -> bool: ...

    def workers_busy(self, assigned: Iterable[TopicPartition]) -> bool: ...


@dataclass(frozen=True)
class Admitted:
    """A record admitted and validated: its event, and the tasks of its route that want it (all of
    them but those whose filter refused it; never none)."""

    tp: TopicPartition
    record: Any
    envelope: Envelope
    message: codec.IncomingMessage
    tasks: tuple[str, ...]


@dataclass
class _Progress:
    """The offsets handed on (to Celery or the DLQ) per partition, and the first failure of each."""

    handled: dict[TopicPartition, set[int]]
    failed: dict[TopicPartition, tuple[int, BaseException, codec.IncomingMessage]] = field(
        default_factory=dict
    )

    def fail(self, tp: TopicPartition, exc: BaseException, message: codec.IncomingMessage) -> None:
        self.failed.setdefault(tp, (message.offset, exc, message))


class Dispatcher:
    def __init__(
        self,
        gate: PartitionGate,
        load: Load,
        *,
        send_task: SendTask,
        queue_for_task: Callable[[str], str],
        batch_max: int,
        batch_linger_ms: int,
        batch_linger_max_ms: int,
        poll_timeout_ms: int,
        max_handoff_bytes: int,
    ) -> None:
        self.gate = gate
        self.load = load
        self.send_task = send_task
        self.queue_for_task = queue_for_task
        self.batch_max = batch_max
        self.batch_linger_ms = batch_linger_ms
        self.batch_linger_max_ms = batch_linger_max_ms
        self.poll_timeout_ms = poll_timeout_ms
        self.max_handoff_bytes = max_handoff_bytes

    # --- polling ---------------------------------------------------------------------------------

    def poll(
        self, consumer: Consuming, assigned: Iterable[TopicPartition]
    ) -> dict[TopicPartition, list[Any]]:
        """A poll's records. When a backlog shows (the poll brought more than one record, or a
        worker queue is not empty), wait up to `batch_linger_ms` for more so batches fill; a lone
        event with idle workers is dispatched at once."""
        records = consumer.poll(timeout_ms=self.poll_timeout_ms)
        count = sum(len(messages) for messages in records.values())
        busy = count > 1 or self.load.backlog()
        if count and busy and count < self.batch_max and self.batch_linger_ms > 0:
            start = time.monotonic()
            deadline = start + self.batch_linger_ms / 1000
            longest = start + max(self.batch_linger_max_ms, self.batch_linger_ms) / 1000
            while count < self.batch_max:
                left = deadline - time.monotonic()
                if left <= 0:
                    # The workers are still busy with earlier batches: what arrives meanwhile
                    # would only wait in their queue, so it waits here and leaves as one batch.
                    if time.monotonic() >= longest or not self.load.workers_busy(assigned):
                        break
                    deadline = min(longest, time.monotonic() + self.batch_linger_ms / 1000)
                    continue
                more = consumer.poll(timeout_ms=max(int(left * 1000), 1), max_records=self.batch_max - count)
                for tp, messages in more.items():
                    records.setdefault(tp, []).extend(messages)
                    count += len(messages)
        return records

    # --- dispatching -----------------------------------------------------------------------------

    def dispatch_records(
        self, consumer: Consuming, records: dict[TopicPartition, list[Any]], done: dict[TopicPartition, int]
    ) -> bool:
        """Dead-letter the poison, pack the rest by route (across partitions, in each partition's
        order) into batches of up to `batch_max`, and dispatch them. Each partition's next offset
        to commit (`done`) moves up to its first record not yet handled. Returns whether
        something failed.

        When a record (or a batch) fails to go out, its partitions are sought back to it and
        blocked for a backoff (bridge.gate); nothing more is tried in this step, and the
        partitions not reached are sought back to be polled again at once, so Redis or Kafka
        being away costs one failure per step while the partitions that are fine keep flowing. A
        blocked partition goes one record at a time, so that a batch-mate's failure cannot hold it.
        """
        progress = _Progress(handled={tp: set() for tp in records})
        singles, groups = self._admit_all(records, progress)
        with self.gate.handing_off({tp: messages[0].offset for tp, messages in records.items()}):
            self._send_singles(singles, progress)
            self._send_groups(groups, progress)
        self._settle(consumer, records, progress, done)
        return bool(progress.failed)

    def _admit_all(
        self, records: dict[TopicPartition, list[Any]], progress: _Progress
    ) -> tuple[list[tuple[routing.Route, Admitted]], dict[routing.Route, list[Admitted]]]:
        """The admitted records: those of blocked partitions one by one, the rest by route. Stops
        at the first record that could not be dead-lettered."""
        singles: list[tuple[routing.Route, Admitted]] = []
        groups: dict[routing.Route, list[Admitted]] = {}
        for tp, messages in records.items():
            for record in messages:
                if progress.failed:
                    return singles, groups
                admitted = self._admit(tp, record, progress)
                if admitted is None:
                    continue
                route, item = admitted
                if self.gate.is_blocked(tp):
                    singles.append((route, item))
                else:
                    groups.setdefault(route, []).append(item)
        return singles, groups

    def _admit(
        self, tp: TopicPartition, record: Any, progress: _Progress
    ) -> tuple[routing.Route, Admitted] | None:
        """The record's route, or None when it went (or failed to go) to the DLQ instead."""
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
            self._dead_letter(tp, message, progress, reason=poison.reason, error=str(poison))
            return None
        except TRANSIENT_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - one record's surprise is its dead letter, never the bridge's exit
            logger.exception("unexpected error validating %s", message.fallback_id)
            self._dead_letter(tp, message, progress, reason="schema_violation", error=safe_error(exc))
            return None
        tasks = route.accepting(envelope)
        if not tasks:
            # Nothing to hand to Celery, so nothing that could fail: the record is done with.
            _count_filtered(route, message.topic, tasks)
            metrics.KAFKA_MESSAGES.labels(topic=message.topic, outcome="filtered").inc()
            logger.debug(
                "%s@%s:%s wanted by no task: handed on", message.topic, message.partition, message.offset
            )
            progress.handled[tp].add(message.offset)
            return None
        size = len(record.value or b"")
        if size > self.max_handoff_bytes:
            self._dead_letter(
                tp,
                message,
                progress,
                reason=TOO_LARGE,
                error=(
                    f"record of {size} bytes exceeds BRIDGE_MAX_HANDOFF_BYTES "
                    f"({self.max_handoff_bytes}): not handed to Celery"
                ),
                as_reference=True,
            )
            return None
        return route, Admitted(tp, record, envelope, message, tasks)

    def _dead_letter(
        self, tp: TopicPartition, message: codec.IncomingMessage, progress: _Progress, **kwargs: Any
    ) -> None:
        try:
            dead_letter(message, **kwargs)
        except TRANSIENT_ERRORS as exc:
            progress.fail(tp, exc, message)
            return
        metrics.KAFKA_MESSAGES.labels(topic=message.topic, outcome="dead_lettered").inc()
        progress.handled[tp].add(message.offset)

    def _send_singles(self, singles: list[tuple[routing.Route, Admitted]], progress: _Progress) -> None:
        for route, item in singles:
            if progress.failed:
                return
            try:
                self.send(route, [item])
            except TRANSIENT_ERRORS as exc:
                progress.fail(item.tp, exc, item.message)
                return
            progress.handled[item.tp].add(item.record.offset)

    def _send_groups(self, groups: dict[routing.Route, list[Admitted]], progress: _Progress) -> None:
        for route, items in groups.items():
            for start in range(0, len(items), self.batch_max):
                if progress.failed:
                    return
                chunk = items[start : start + self.batch_max]
                try:
                    self.send(route, chunk)
                except TRANSIENT_ERRORS as exc:
                    for item in chunk:  # which of them Redis refused is not known: all retry
                        progress.fail(item.tp, exc, item.message)
                    return
                for item in chunk:
                    progress.handled[item.tp].add(item.record.offset)

    def _settle(
        self,
        consumer: Consuming,
        records: dict[TopicPartition, list[Any]],
        progress: _Progress,
        done: dict[TopicPartition, int],
    ) -> None:
        """Move each partition's offset up to its first record not handled and seek back there;
        unblock the partitions past their failing record, block those that failed."""
        for tp, messages in records.items():
            resume = next((r.offset for r in messages if r.offset not in progress.handled[tp]), None)
            if resume is None:
                done[tp] = messages[-1].offset + 1
            else:
                if resume > messages[0].offset:
                    done[tp] = resume
                consumer.seek(tp, resume)
            self.gate.moved_to(consumer, tp, done.get(tp))
        for tp, (offset, error, message) in progress.failed.items():
            self.gate.block(consumer, tp, offset, error, message)

    def send(self, route: routing.Route | None, run: list[Admitted]) -> None:
        """Each task of the route gets the events of `run` it wants: one as itself, several as one
        `bridge.process_batch` task carrying them all (see bridge.tasks.process_batch)."""
        assert route is not None
        payloads = [tracing.dispatch_payload(item.envelope, item.tasks) for item in run]
        for task_name in route.tasks:
            wanted = [
                (item, payload)
                for item, payload in zip(run, payloads, strict=True)
                if task_name in item.tasks
            ]
            if len(wanted) == 1:
                [(item, payload)] = wanted
                # Bound while sending: the task's `correlationid` header.
                with _bound(item.envelope):
                    self.send_task(task_name, args=[payload], queue=self.queue_for_task(task_name))
            elif wanted:
                batch = [payload for _, payload in wanted]
                self.send_task(BATCH_TASK, args=[task_name, batch], queue=self.queue_for_task(task_name))
        # One line per event, alone or in a batch, so each event's correlation id is in the log.
        batched = f" (batch of {len(run)})" if len(run) > 1 else ""
        for item in run:
            with _bound(item.envelope):
                record = item.record
                logger.info(
                    "dispatched %s@%s:%s to %s%s",
                    record.topic,
                    record.partition,
                    record.offset,
                    ", ".join(item.tasks),
                    batched,
                )
            _count_filtered(route, record.topic, item.tasks)
        metrics.BRIDGE_DISPATCH.inc(sum(len(item.tasks) for item in run))
        for topic, count in Counter(item.record.topic for item in run).items():  # a batch may span topics
            metrics.KAFKA_MESSAGES.labels(topic=topic, outcome="dispatched").inc(count)


def _bound(envelope: Envelope) -> AbstractContextManager[None]:
    return correlation.bound(
        envelope.correlation_id or envelope.id, event_id=envelope.id, event_type=envelope.type
    )


def _count_filtered(route: routing.Route, topic: str, tasks: tuple[str, ...]) -> None:
    """Count the route's tasks that got no task for a record because their filter refused it."""
    for task_name in route.tasks:
        if task_name not in tasks:
            metrics.BRIDGE_FILTERED.labels(topic=topic, task=task_name).inc()
