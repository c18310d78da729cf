"""The dispatcher on its own: polled records are admitted or dead-lettered, packed by route into
batches, and handed on; each partition's offset moves up to its first record not handed on, and a
partition whose record failed to go out is sought back to it and blocked.

Records are real (signed CloudEvents, validated by the real routing, or by a table built from
consumers declared here); Kafka is a stand-in, and Celery and the DLQ are stubbed where the record
would leave the bridge."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import TopicPartition
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import codec, routing, topics
from bridge import dispatcher as dispatcher_module
from bridge.consumers import Consumer
from bridge.dispatcher import BATCH_TASK, TOO_LARGE, Admitted, Dispatcher
from bridge.gate import PartitionGate
from core import ids, metrics
from ledger import task_names as ledger_tasks
from notifications import task_names as notification_tasks
from orders import task_names as order_tasks
from payments.events import PaymentRequested
from tests.support.builders import payment_request, structured
from tests.support.signing import sign

REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
AUDIT = "audit.payment-events"
A0, A1, C0 = TopicPartition(REQUESTED, 0), TopicPartition(REQUESTED, 1), TopicPartition(AUDIT, 0)
P0 = TopicPartition(PROCESSED, 0)
REDIS_AWAY = KombuOperationalError("Redis away")


def record(
    tp: TopicPartition, offset: int, value: bytes | None = None, data: dict[str, Any] | None = None
) -> SimpleNamespace:
    """A record as polled: a signed event of `tp`'s topic (with `data`, else a sample), or the
    bytes `value` as they are."""
    headers: list[tuple[str, bytes]] = []
    if value is None:
        if data is not None:
            value = structured(tp.topic, data)
        elif tp.topic == REQUESTED:
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


def admitted(tp: TopicPartition, r: SimpleNamespace) -> tuple[routing.Route, Admitted]:
    """The record as the dispatcher admits it: its route, and it with the route's tasks that want it."""
    envelope, route = routing.validate(codec.decode(incoming(r)))
    return route, Admitted(tp, r, envelope, incoming(r), route.accepting(envelope))


def payment_processed(payment_id: str) -> dict[str, Any]:
    return {
        **payment_request(paymentId=payment_id),
        "status": "captured",
        "processedAt": "2026-11-23T10:00:01Z",
    }


def filtered(topic: str, task: str) -> float:
    """bridge_filtered_total{topic, task} in this process."""
    return metrics.BRIDGE_FILTERED.labels(topic=topic, task=task)._value.get()


def kafka_messages(topic: str, outcome: str) -> float:
    return metrics.KAFKA_MESSAGES.labels(topic=topic, outcome=outcome)._value.get()


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

    def send(self, route: routing.Route | None, run: list[Admitted]) -> None:
        self.calls += 1
        self.waiting_seen.append(self.gate.waiting_partitions())
        if self.calls in self.fail_on:
            raise REDIS_AWAY
        self.sent.append([(item.record.topic, item.record.partition, item.record.offset) for item in run])


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


class Sending(Dispatcher):
    """A real dispatcher whose Celery is a list of (task name, args, queue)."""

    def __init__(self, *, batch_max: int = 100) -> None:
        self.tasks: list[tuple[str, list[Any], str]] = []
        super().__init__(
            new_gate(),
            Idle(),
            send_task=lambda name, *, args, queue: self.tasks.append((name, args, queue)),
            queue_for_task=lambda name: f"queue-of-{name}",
            batch_max=batch_max,
            batch_linger_ms=0,
            batch_linger_max_ms=0,
            poll_timeout_ms=500,
            max_handoff_bytes=1024 * 1024,
        )

    def events_by_task(self) -> dict[str, list[str]]:
        """Each task name and the event ids it was sent, alone or in `bridge.process_batch`."""
        by_task: dict[str, list[str]] = {}
        for name, args, _queue in self.tasks:
            task, payloads = (args[0], args[1]) if name == BATCH_TASK else (name, args)
            by_task.setdefault(task, []).extend(payload["id"] for payload in payloads)
        return by_task


def test_one_event_goes_out_as_its_route_tasks_and_several_as_one_batch_task_per_route_task() -> None:
    dispatcher = Sending()
    (route, one), (_, two) = admitted(A0, record(A0, 0)), admitted(A0, record(A0, 1))

    dispatcher.send(route, [one])
    dispatcher.send(route, [one, two])

    [task] = route.tasks
    [lone, batch] = dispatcher.tasks
    assert lone[0] == task and lone[1][0]["id"] == one.envelope.id and lone[2] == f"queue-of-{task}"
    assert batch[0] == BATCH_TASK and batch[1][0] == task and batch[2] == f"queue-of-{task}"
    assert [payload["id"] for payload in batch[1][1]] == [one.envelope.id, two.envelope.id]


# --- consumers' filters ----------------------------------------------------------------------------


def test_a_payment_that_is_no_orders_goes_to_its_other_consumers_and_not_to_orders(
    letters: list[Any],
) -> None:
    """Orders' declared filter: of two captured payments, only the order's reaches orders' task;
    the ledger and notifications get both, in one batch each."""
    dispatcher = Sending()
    shop = record(P0, 7, data=payment_processed("pay_shop_1"))
    order = record(P0, 8, data=payment_processed(f"{ids.ORDER_PAYMENT_PREFIX}{'a' * 32}"))
    refused_before = filtered(PROCESSED, order_tasks.SETTLE_ORDER_PAYMENT)
    done: dict[TopicPartition, int] = {}

    assert not dispatcher.dispatch_records(KafkaStandIn(), {P0: [shop, order]}, done)

    shop_id, order_id = (routing.validate(codec.decode(incoming(r)))[0].id for r in (shop, order))
    assert dispatcher.events_by_task() == {
        ledger_tasks.POST_CAPTURED_PAYMENT: [shop_id, order_id],
        notification_tasks.NOTIFY_PAYMENT_OUTCOME: [shop_id, order_id],
        order_tasks.SETTLE_ORDER_PAYMENT: [order_id],
    }
    # The order's payment, the only one orders' task wants of the batch, goes out as itself.
    assert (order_tasks.SETTLE_ORDER_PAYMENT, "queue-of-orders.settle_order_payment") in {
        (name, queue) for name, _args, queue in dispatcher.tasks
    }
    assert done == {P0: 9} and letters == []
    assert filtered(PROCESSED, order_tasks.SETTLE_ORDER_PAYMENT) == refused_before + 1


def only_kept(data: Mapping[str, Any]) -> bool:
    return str(data["paymentId"]).startswith("keep_")


@pytest.fixture
def kept_only(monkeypatch: pytest.MonkeyPatch) -> routing.Route:
    """Payment requests routed to two tasks, each taking only the payments whose id says keep."""
    table = routing.build(
        [
            Consumer(REQUESTED, PaymentRequested, "a.task", accepts=only_kept, accepts_doc="kept ones"),
            Consumer(REQUESTED, PaymentRequested, "b.task", accepts=only_kept, accepts_doc="kept ones"),
        ]
    )
    monkeypatch.setattr(routing, "_table", lambda: table)
    return table.by_type[REQUESTED]


def test_a_record_no_task_wants_makes_no_task_and_its_partition_moves_on(
    kept_only: routing.Route, letters: list[Any]
) -> None:
    dispatcher = Sending()
    skip = [record(A0, 0, data=payment_request()), record(A0, 2, data=payment_request())]
    keep = record(A0, 1, data=payment_request(paymentId="keep_1"))
    records = {A0: [skip[0], keep, skip[1]], A1: [record(A1, 4, data=payment_request())]}
    before = (
        filtered(REQUESTED, "a.task"),
        filtered(REQUESTED, "b.task"),
        kafka_messages(REQUESTED, "filtered"),
    )
    done: dict[TopicPartition, int] = {}
    consumer = KafkaStandIn()

    assert not dispatcher.dispatch_records(consumer, records, done)

    kept_id = routing.validate(codec.decode(incoming(keep)))[0].id
    assert dispatcher.events_by_task() == {"a.task": [kept_id], "b.task": [kept_id]}
    # Handed on as if it had gone out: every offset moves past, nothing is sought back or blocked.
    assert done == {A0: 3, A1: 5} and consumer.seeks == [] and not dispatcher.gate.blocked
    assert letters == []
    after = (
        filtered(REQUESTED, "a.task"),
        filtered(REQUESTED, "b.task"),
        kafka_messages(REQUESTED, "filtered"),
    )
    assert [a - b for a, b in zip(after, before, strict=True)] == [3, 3, 3]


def test_a_filter_that_raises_accepts_and_is_logged_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(data: Mapping[str, Any]) -> bool:
        raise KeyError("shopId")

    table = routing.build([Consumer(REQUESTED, PaymentRequested, "a.task", accepts=broken, accepts_doc="?")])
    monkeypatch.setattr(routing, "_table", lambda: table)
    dispatcher = Sending()
    records = {A0: [record(A0, 0), record(A0, 1)]}
    done: dict[TopicPartition, int] = {}

    with caplog.at_level(logging.WARNING, logger="bridge.routing"):
        assert not dispatcher.dispatch_records(KafkaStandIn(), records, done)

    # Both went to the task; the filter's failure is one warning, not one per record.
    assert len(dispatcher.events_by_task()["a.task"]) == 2 and done == {A0: 2}
    [warning] = [r.getMessage() for r in caplog.records if r.name == "bridge.routing"]
    assert "filter of a.task raised" in warning and "KeyError" in warning


def test_a_lone_record_with_idle_workers_is_not_held_for_more() -> None:
    consumer = KafkaStandIn(polls=[{A0: [record(A0, 0)]}, {A0: [record(A0, 1)]}])
    dispatcher = Recording(new_gate())

    polled = dispatcher.poll(consumer, {A0})

    assert [r.offset for r in polled[A0]] == [0] and consumer.poll_calls == 1
