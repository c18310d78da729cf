"""The dispatcher on its own: polled records are admitted or dead-lettered, packed by route into
batches, and handed on; each partition's offset moves up to its first record not handed on, and a
partition whose record failed to go out is sought back to it and blocked.

Records are real (signed CloudEvents, validated by the real routing); Kafka is a stand-in, and
Celery and the DLQ are stubbed where the record would leave the bridge."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import codec, routing, topics
from bridge import dispatcher as dispatcher_module
from bridge.codec import Envelope
from bridge.dispatcher import BATCH_TASK, TOO_LARGE, Dispatcher
from bridge.gate import PartitionGate
from tests.support.builders import payment_request, structured
from tests.support.signing import sign

REQUESTED = topics.PAYMENT_REQUESTED.name
AUDIT = "audit.payment-events"
A0, A1, C0 = TopicPartition(REQUESTED, 0), TopicPartition(REQUESTED, 1), TopicPartition(AUDIT, 0)
REDIS_AWAY = KombuOperationalError("Redis away")


def record(tp: TopicPartition, offset: int, value: bytes | None = None) -> SimpleNamespace:
    """A record as polled: a signed event of `tp`'s topic, or the bytes `value` as they are."""
    headers: list[tuple[str, bytes]] = []
    if value is None:
        if tp.topic == REQUESTED:
            value = structured(REQUESTED, payment_request())
        else:
            data = {
                "action": "payment.captured",
                "subjectType": "payment",
                "subjectId": "p",
                "actor": "system:t",
            }
            value = structured(tp.topic, data)
        headers = sign(tp.topic, value)
    return SimpleNamespace(
        topic=tp.topic, partition=tp.partition, offset=offset, key=b"k", value=value, headers=headers
    )


def incoming(r: SimpleNamespace) -> codec.IncomingMessage:
    return codec.IncomingMessage(
        topic=r.topic, partition=r.partition, offset=r.offset, key=r.key, value=r.value, headers=r.headers
    )


class KafkaStandIn:
    """Records seeks, pauses and resumes; `polls` answers consecutive polls."""

    def __init__(self, polls: list[dict[TopicPartition, list[Any]]] | None = None) -> None:
        self.polls = list(polls or [])
        self.poll_calls = 0
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.paused: set[TopicPartition] = set()

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[Any]]:
        self.poll_calls += 1
        return self.polls.pop(0) if self.polls else {}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)


class Idle:
    """Workers with nothing queued."""

    def backlog(self) -> bool:
        return False

    def workers_busy(self, assigned: object) -> bool:
        return False


class Recording(Dispatcher):
    """Hands on by recording the runs (topic, partition, offset); the calls in `fail_on`
    (1-based) fail as with Redis away."""

    def __init__(self, gate: PartitionGate, *, batch_max: int = 100, fail_on: tuple[int, ...] = ()) -> None:
        super().__init__(
            gate,
            Idle(),
            send_task=lambda name, *, args, queue: pytest.fail("sent past the stand-in"),
            queue_for_task=lambda name: name,
            batch_max=batch_max,
            batch_linger_ms=10,
            batch_linger_max_ms=100,
            poll_timeout_ms=500,
            max_handoff_bytes=1024 * 1024,
        )
        self.fail_on = fail_on
        self.calls = 0
        self.sent: list[list[tuple[str, int, int]]] = []
        self.waiting_seen: list[list[dict[str, Any]]] = []

    def send(self, route: routing.Route | None, run: list[tuple[Any, Envelope]]) -> None:
        self.calls += 1
        self.waiting_seen.append(self.gate.waiting_partitions())
        if self.calls in self.fail_on:
            raise REDIS_AWAY
        self.sent.append([(r.topic, r.partition, r.offset) for r, _ in run])


def new_gate() -> PartitionGate:
    return PartitionGate(retry_backoff_s=0.5, retry_backoff_max_s=10, stuck_after_s=60)


@pytest.fixture
def letters(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str, bool]]:
    sent: list[tuple[int, str, bool]] = []

    def dead_letter(msg: Any, *, reason: str, error: str, as_reference: bool = False) -> None:
        sent.append((msg.offset, reason, as_reference))

    monkeypatch.setattr(dispatcher_module, "dead_letter", dead_letter)
    return sent


def test_records_go_out_by_route_in_batches_across_partitions_in_order(letters: list[Any]) -> None:
    consumer, dispatcher = KafkaStandIn(), Recording(new_gate(), batch_max=3)
    records = {
        A0: [record(A0, 10), record(A0, 11), record(A0, 12)],
        C0: [record(C0, 4)],
        A1: [record(A1, 0), record(A1, 1)],
    }
    done: dict[TopicPartition, int] = {}

    assert not dispatcher.dispatch_records(consumer, records, done)

    assert dispatcher.sent == [
        [(REQUESTED, 0, 10), (REQUESTED, 0, 11), (REQUESTED, 0, 12)],
        [(REQUESTED, 1, 0), (REQUESTED, 1, 1)],
        [(AUDIT, 0, 4)],
    ]
    assert done == {A0: 13, A1: 2, C0: 5} and consumer.seeks == [] and letters == []
    # While handing on, each partition is named as waiting from its first record.
    assert {(w["partition"], w["offset"]) for w in dispatcher.waiting_seen[0] if w["topic"] == REQUESTED} == {
        (0, 10),
        (1, 0),
    }
    assert dispatcher.gate.waiting_partitions() == []


def test_poison_and_too_large_records_are_dead_lettered_and_their_partition_moves_on(
    letters: list[Any],
) -> None:
    consumer, dispatcher = KafkaStandIn(), Recording(new_gate())
    large = record(A0, 2)
    dispatcher.max_handoff_bytes = len(large.value) - 1
    small = record(A1, 0, value=b"{}")  # not a CloudEvent: poison, and small
    records = {A0: [large], A1: [small, record(A1, 1, value=b"not json")]}
    done: dict[TopicPartition, int] = {}

    assert not dispatcher.dispatch_records(consumer, records, done)

    assert [(offset, as_reference) for offset, _, as_reference in letters] == [
        (2, True),
        (0, False),
        (1, False),
    ]
    assert letters[0][1] == TOO_LARGE
    assert dispatcher.sent == [] and done == {A0: 3, A1: 2}


def test_a_batch_that_fails_blocks_its_partitions_at_their_first_record_not_handed_on(
    letters: list[Any],
) -> None:
    consumer, dispatcher = KafkaStandIn(), Recording(new_gate(), batch_max=2, fail_on=(2,))
    records = {A0: [record(A0, 0), record(A0, 1), record(A0, 2)], A1: [record(A1, 5)]}
    done: dict[TopicPartition, int] = {}

    assert dispatcher.dispatch_records(consumer, records, done)

    # [A0:0, A0:1] went out; [A0:2, A1:5] failed, and which of them Redis refused is not known.
    assert dispatcher.sent == [[(REQUESTED, 0, 0), (REQUESTED, 0, 1)]]
    assert done == {A0: 2} and consumer.seeks == [(A0, 2), (A1, 5)]
    assert {tp: b.offset for tp, b in dispatcher.gate.blocked.items()} == {A0: 2, A1: 5}
    assert consumer.paused == {A0, A1}


def test_after_a_failure_nothing_more_is_tried_and_the_partitions_not_reached_are_polled_again(
    letters: list[Any],
) -> None:
    consumer, dispatcher = KafkaStandIn(), Recording(new_gate(), batch_max=1, fail_on=(1,))
    records = {A0: [record(A0, 0)], A1: [record(A1, 5)], C0: [record(C0, 3)]}
    done: dict[TopicPartition, int] = {}

    assert dispatcher.dispatch_records(consumer, records, done)

    assert dispatcher.calls == 1 and done == {}
    assert consumer.seeks == [(A0, 0), (A1, 5), (C0, 3)]
    assert set(dispatcher.gate.blocked) == {A0} and consumer.paused == {A0}


def test_a_blocked_partition_goes_one_record_at_a_time_and_flows_once_past(letters: list[Any]) -> None:
    consumer, gate = KafkaStandIn(), new_gate()
    gate.block(consumer, A0, 0, REDIS_AWAY, incoming(record(A0, 0)))
    dispatcher = Recording(gate)
    records = {A0: [record(A0, 0), record(A0, 1)], A1: [record(A1, 0), record(A1, 1)]}
    done: dict[TopicPartition, int] = {}

    assert not dispatcher.dispatch_records(consumer, records, done)

    assert dispatcher.sent == [
        [(REQUESTED, 0, 0)],
        [(REQUESTED, 0, 1)],
        [(REQUESTED, 1, 0), (REQUESTED, 1, 1)],
    ]
    assert done == {A0: 2, A1: 2} and not gate.is_blocked(A0) and consumer.paused == set()


def test_a_dead_letter_that_fails_blocks_the_partition_at_that_record(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def dead_letter(msg: Any, **kw: Any) -> None:
        raise REDIS_AWAY

    monkeypatch.setattr(dispatcher_module, "dead_letter", dead_letter)
    consumer, dispatcher = KafkaStandIn(), Recording(new_gate())
    records = {A0: [record(A0, 0), record(A0, 1, value=b"not json"), record(A0, 2)], A1: [record(A1, 0)]}
    done: dict[TopicPartition, int] = {}

    assert dispatcher.dispatch_records(consumer, records, done)

    # Nothing is handed on in a step with a failure: every partition is polled again from its
    # first record, and the one whose dead letter failed waits for its retry.
    assert dispatcher.calls == 0 and done == {}
    assert consumer.seeks == [(A0, 0), (A1, 0)]
    assert {tp: b.offset for tp, b in dispatcher.gate.blocked.items()} == {A0: 1}
    assert consumer.paused == {A0}


def test_one_event_goes_out_as_its_route_tasks_and_several_as_one_batch_task_per_route_task() -> None:
    sent: list[tuple[str, list[Any], str]] = []
    dispatcher = Dispatcher(
        new_gate(),
        Idle(),
        send_task=lambda name, *, args, queue: sent.append((name, args, queue)),
        queue_for_task=lambda name: f"queue-of-{name}",
        batch_max=100,
        batch_linger_ms=0,
        batch_linger_max_ms=0,
        poll_timeout_ms=500,
        max_handoff_bytes=1024 * 1024,
    )
    route = routing.route_for(REQUESTED)
    assert route is not None
    one, two = record(A0, 0), record(A0, 1)
    envelopes = [routing.validate(codec.decode(incoming(r)))[0] for r in (one, two)]

    dispatcher.send(route, [(one, envelopes[0])])
    dispatcher.send(route, [(one, envelopes[0]), (two, envelopes[1])])

    [task] = route.tasks
    [lone, batch] = sent
    assert lone[0] == task and lone[1][0]["id"] == envelopes[0].id and lone[2] == f"queue-of-{task}"
    assert batch[0] == BATCH_TASK and batch[1][0] == task and batch[2] == f"queue-of-{task}"
    assert [payload["id"] for payload in batch[1][1]] == [e.id for e in envelopes]


def test_a_lone_record_with_idle_workers_is_not_held_for_more() -> None:
    consumer = KafkaStandIn(polls=[{A0: [record(A0, 0)]}, {A0: [record(A0, 1)]}])
    dispatcher = Recording(new_gate())

    polled = dispatcher.poll(consumer, {A0})

    assert [r.offset for r in polled[A0]] == [0] and consumer.poll_calls == 1
