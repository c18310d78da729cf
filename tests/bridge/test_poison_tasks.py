"""The counting behind "3 starts without finishing -> DLQ poison", and the bridge's last resort.

The end-to-end proofs (a worker killed under a task, deep and odd records) are in
test_poison_messages.py; these pin the rules: only a start counts, any end clears it, and a record
that fails validation in an unforeseen way is that record's dead letter, not the bridge's exit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery.exceptions import Retry
from kafka import TopicPartition

from bridge import poison
from bridge import tasks as bridge_tasks
from bridge.poison import MAX_UNFINISHED_STARTS, STARTS_TTL_S, StartCounter
from bridge.tasks import EventTask
from kafka_platform.celery import app
from tests.conftest import TEST_REDIS_URL

RUNS: list[str] = []
# What the counter showed for the running task, seen from inside its body.
SEEN: list[int] = []


@app.task(bind=True, base=EventTask, name="tests.poison_probe")
def poison_probe(self: EventTask, payload: dict[str, Any], outcome: str = "ok") -> str:
    RUNS.append(payload["id"])
    SEEN.append(poison.counter().unfinished(str(self.request.id)))
    if outcome == "fail":
        raise ValueError("the body failed")
    if outcome == "retry":
        raise Retry("again")
    return "ran"


@pytest.fixture
def counter(monkeypatch: pytest.MonkeyPatch) -> Iterator[StartCounter]:
    counting = StartCounter(redis.Redis.from_url(TEST_REDIS_URL))
    monkeypatch.setattr(poison, "_counter", counting)
    RUNS.clear()
    SEEN.clear()
    yield counting


@pytest.fixture
def dead(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    letters: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        bridge_tasks,
        "dead_letter",
        lambda message, *, reason, error, **kw: letters.append((message.topic, reason, error)),
    )
    return letters


def payload() -> dict[str, Any]:
    return {
        "id": f"evt-{uuid.uuid4().hex[:8]}",
        "type": "payments.payment-requested",
        "source": "/tests",
        "time": "2026-12-04T00:00:00Z",
        "subject": "pay_1",
        "data": {"paymentId": "pay_1"},
        "origin": ["payments.payment-requested", 0, 5],
    }


def run_in_worker(task_id: str, *args: Any) -> Any:
    """Run the task as the worker does: a request with its id, not called directly."""
    poison_probe.push_request(id=task_id, called_directly=False, is_eager=False, retries=0)
    try:
        return poison_probe(*args)
    finally:
        poison_probe.pop_request()


def test_the_counter_counts_starts_and_forgets_a_finish(counter: StartCounter) -> None:
    task_id = uuid.uuid4().hex
    assert [counter.start(task_id) for _ in range(3)] == [1, 2, 3]
    assert 0 < counter._redis.ttl(poison.KEY_PREFIX + task_id) <= STARTS_TTL_S
    counter.finish(task_id)
    assert counter.unfinished(task_id) == 0
    assert not poison.is_poison(MAX_UNFINISHED_STARTS) and poison.is_poison(MAX_UNFINISHED_STARTS + 1)


@pytest.mark.parametrize("outcome", ["ok", "fail", "retry"])
def test_a_body_that_ends_in_any_way_leaves_no_count(counter: StartCounter, outcome: str) -> None:
    task_id = uuid.uuid4().hex
    event = payload()
    try:
        run_in_worker(task_id, event, outcome)
    except (ValueError, Retry):
        pass
    assert RUNS == [event["id"]] and SEEN == [1]  # counted while it ran
    assert counter.unfinished(task_id) == 0


def test_a_task_whose_starts_never_finished_3_times_is_dead_lettered_not_run(
    counter: StartCounter, dead: list[tuple[str, str, str]]
) -> None:
    task_id = uuid.uuid4().hex
    event = payload()
    for _ in range(MAX_UNFINISHED_STARTS):  # three runs whose process died under them
        counter.start(task_id)

    assert run_in_worker(task_id, event) is None

    assert RUNS == []
    [(topic, reason, error)] = dead
    assert topic == "payments.payment-requested" and reason == "poison"
    assert "started 3 times without finishing" in error
    assert counter.unfinished(task_id) == 0


def test_deliveries_that_never_started_cost_nothing(counter: StartCounter, dead: list[Any]) -> None:
    """A worker killed with tasks prefetched but not started: only starts count, so a task
    redelivered any number of times runs, and even one that died under it twice runs a third time."""
    fresh, twice_died = uuid.uuid4().hex, uuid.uuid4().hex
    for _ in range(MAX_UNFINISHED_STARTS - 1):
        counter.start(twice_died)
    assert run_in_worker(fresh, payload()) == "ran"
    assert run_in_worker(twice_died, payload()) == "ran"
    assert len(RUNS) == 2 and dead == []


def test_a_task_called_directly_is_not_counted(counter: StartCounter) -> None:
    """Inside bridge.process_batch each event's body is called directly: the batch task counts."""
    poison_probe.push_request(id="batch-inner", called_directly=True)
    try:
        assert poison_probe(payload()) == "ran"
    finally:
        poison_probe.pop_request()
    assert counter.unfinished("batch-inner") == 0 and SEEN == [0]


def test_a_poisoned_batch_is_split_into_tasks_of_their_own(
    counter: StartCounter, dead: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, list[Any]]] = []
    monkeypatch.setattr(app, "send_task", lambda name, args, **kw: sent.append((name, args)))
    batch = bridge_tasks.process_batch
    events = [payload(), payload()]
    task_id = uuid.uuid4().hex
    for _ in range(MAX_UNFINISHED_STARTS):
        counter.start(task_id)
    batch.push_request(id=task_id, called_directly=False, is_eager=False, retries=0)
    try:
        assert batch("tests.poison_probe", events) is None
    finally:
        batch.pop_request()
    assert sent == [("tests.poison_probe", [events[0]]), ("tests.poison_probe", [events[1]])]
    assert dead == [] and RUNS == []


# --- the bridge's last resort -------------------------------------------------------------------


class SeekingConsumer:
    def __init__(self) -> None:
        self.seeks: list[tuple[TopicPartition, int]] = []

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


def test_a_record_failing_validation_in_an_unforeseen_way_is_dead_lettered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bridge import dispatcher as bridge_dispatcher
    from bridge import routing
    from bridge.dispatcher import Dispatcher
    from bridge.gate import PartitionGate

    def surprise(envelope: Any) -> Any:
        raise ZeroDivisionError("a validator bug")

    letters: list[tuple[int, str]] = []
    monkeypatch.setattr(routing, "validate", surprise)
    monkeypatch.setattr(
        bridge_dispatcher,
        "dead_letter",
        lambda message, *, reason, error, **kw: letters.append((message.offset, reason)),
    )
    gate = PartitionGate(retry_backoff_s=0.5, retry_backoff_max_s=10, stuck_after_s=60)
    dispatcher = Dispatcher(
        gate,
        SimpleNamespace(),  # type: ignore[arg-type]
        send_task=lambda name, *, args, queue: None,
        queue_for_task=lambda name: name,
        batch_max=100,
        batch_linger_ms=10,
        batch_linger_max_ms=100,
        poll_timeout_ms=500,
        max_handoff_bytes=1024,
    )
    tp = TopicPartition("payments.payment-requested", 0)
    record = SimpleNamespace(
        topic=tp.topic, partition=0, offset=41, key=b"k", value=b'{"paymentId": "p"}', headers=[]
    )
    done: dict[TopicPartition, int] = {}

    failed = dispatcher.dispatch_records(SeekingConsumer(), {tp: [record]}, done)  # type: ignore[arg-type]

    assert not failed
    assert letters == [(41, "schema_violation")]
    assert done[tp] == 42  # the partition moves on
