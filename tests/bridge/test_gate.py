"""The partition gate on its own: a blocked partition waits out a growing backoff, a partition flows
only when neither a deep queue nor a failed record holds it, what stays blocked is reported stuck,
and an operator's skip request dead-letters the record and moves the partition past it.

A stand-in consumer records pause and resume; the dead-letter publish is stubbed."""

from __future__ import annotations

from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import KafkaConnectionError

from bridge import codec, gate
from bridge.gate import PartitionGate
from bridge.models import StuckPartition
from bridge.services import stuck_partition_request_skip
from core import metrics

A0, A1 = TopicPartition("gate.a", 0), TopicPartition("gate.a", 1)
OUTAGE = KafkaConnectionError("broker away")


class PausingConsumer:
    """Stands in for KafkaConsumer's pause and resume; `paused` is what Kafka would hold back."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused.difference_update(partitions)


def message(tp: TopicPartition, offset: int) -> codec.IncomingMessage:
    return codec.IncomingMessage(
        topic=tp.topic, partition=tp.partition, offset=offset, key=b"k", value=b"{}", headers=[]
    )


def new_gate(*, stuck_after_s: float = 60.0) -> PartitionGate:
    return PartitionGate(retry_backoff_s=0.5, retry_backoff_max_s=4.0, stuck_after_s=stuck_after_s)


def stuck_gauge(tp: TopicPartition) -> float | None:
    [family] = metrics.BRIDGE_PARTITION_STUCK.collect()
    labels = {"topic": tp.topic, "partition": str(tp.partition)}
    return next((s.value for s in family.samples if s.labels == labels), None)


def test_failures_at_one_offset_are_counted_and_another_offset_starts_afresh() -> None:
    consumer, g = PausingConsumer(), new_gate()
    for _ in range(3):
        g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    attempts = g.blocked[A0].attempts
    g.block(consumer, A0, 8, OUTAGE, message(A0, 8))

    assert attempts == 3 and g.blocked[A0].attempts == 1 and g.blocked[A0].offset == 8
    assert A0 in consumer.paused


def test_the_backoff_grows_with_the_attempts(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(gate.time, "monotonic", lambda: now[0])
    consumer, g = PausingConsumer(), new_gate()
    delays = []
    for _ in range(5):
        g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
        delays.append(g.blocked[A0].retry_at - now[0])

    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_a_blocked_partition_resumes_once_its_backoff_is_over_and_only_if_still_assigned(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(gate.time, "monotonic", lambda: now[0])
    consumer, g = PausingConsumer(), new_gate()
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    g.block(consumer, A1, 3, OUTAGE, message(A1, 3))

    g.resume_due(consumer, frozenset({A0, A1}))
    assert consumer.paused == {A0, A1}  # the backoff is not over

    now[0] += 0.5
    g.resume_due(consumer, frozenset({A0}))
    assert consumer.paused == {A1}  # A1 is no longer ours: not resumed
    assert g.is_blocked(A0)  # resumed to retry its record, still blocked until it gets past it


def test_a_partition_moving_past_its_failed_record_is_unblocked_and_flows() -> None:
    consumer, g = PausingConsumer(), new_gate()
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))

    g.moved_to(consumer, A0, 7)  # not past it yet
    assert g.is_blocked(A0) and A0 in consumer.paused

    g.moved_to(consumer, A0, 8)
    assert not g.is_blocked(A0) and A0 not in consumer.paused


def test_a_partition_flows_only_when_neither_backpressure_nor_a_retry_holds_it() -> None:
    consumer, g = PausingConsumer(), new_gate()
    g.hold(consumer, {A0, A1}, why="queues deep")
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))

    g.hold(consumer, set(), why="queues deep")  # the queue drained
    assert consumer.paused == {A0}  # A0 still waits for its retry; A1 flows

    g.hold(consumer, {A0}, why="queues deep")
    g.unblock(consumer, A0)  # got past its record, but its queue is deep again
    assert consumer.paused == {A0} and g.held == {A0}


def test_a_partition_blocked_for_long_is_stuck_until_it_moves_again() -> None:
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=0)
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))

    [stuck] = g.stuck_partitions()
    assert (stuck.topic, stuck.partition, stuck.offset) == (A0.topic, A0.partition, 7)
    assert "broker away" in stuck.error and stuck_gauge(A0) == 1
    health = g.partitions_health()
    assert health["status"] == "stuck" and health["stuck"][0]["offset"] == 7

    g.moved_to(consumer, A0, 8)
    assert g.stuck_partitions() == [] and stuck_gauge(A0) == 0
    assert g.partitions_health()["status"] == "ok"


def test_a_hand_off_that_does_not_return_is_stuck_and_named_as_waiting() -> None:
    g = new_gate(stuck_after_s=0)
    with g.handing_off({A1: 12}):
        [stuck] = g.stuck_partitions()
        waiting = g.waiting_partitions()
    assert stuck.offset == 12 and "has not returned" in stuck.error
    assert [(w["topic"], w["partition"], w["offset"]) for w in waiting] == [(A1.topic, 1, 12)]
    assert g.stuck_partitions() == [] and g.waiting_partitions() == []


def test_a_retrying_partition_not_yet_stuck_is_listed_as_retrying() -> None:
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=60)
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    health = g.partitions_health()
    assert health["status"] == "ok" and [r["offset"] for r in health["retrying"]] == [7]


def test_a_forgotten_partition_leaves_no_state_and_no_gauge() -> None:
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=0)
    g.hold(consumer, {A0}, why="queues deep")
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    g.stuck_partitions()

    g.forget(A0)

    assert not g.held and not g.blocked and not g.retry_paused and stuck_gauge(A0) is None


# --- operators' skip requests -----------------------------------------------------------------


GROUP = "gate-test"


def stuck_row(g: PartitionGate, assigned: frozenset[TopicPartition]) -> StuckPartition:
    g.report(GROUP, assigned)
    return StuckPartition.objects.get(group=GROUP, topic=A0.topic, partition=A0.partition)


@pytest.fixture
def letters(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    sent: list[tuple[int, str]] = []
    monkeypatch.setattr(
        gate, "dead_letter", lambda msg, *, reason, error, **kw: sent.append((msg.offset, reason))
    )
    return sent


@pytest.mark.django_db
def test_a_requested_skip_dead_letters_the_record_and_moves_past_it(letters: list[Any]) -> None:
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=0)
    assigned = frozenset({A0})
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    row = stuck_row(g, assigned)
    assert row.offset == 7 and "broker away" in row.error
    assert stuck_partition_request_skip(stuck_id=row.pk, actor="ops@example.com")
    g.report(GROUP, assigned)  # the reporter picks the request up
    skipped_to: list[tuple[TopicPartition, int]] = []

    g.apply_skip_requests(consumer, assigned, lambda tp, offset: skipped_to.append((tp, offset)))

    assert letters == [(7, gate.SKIPPED_BY_OPERATOR)] and skipped_to == [(A0, 8)]
    assert not g.is_blocked(A0) and A0 not in consumer.paused
    assert not StuckPartition.objects.filter(pk=row.pk).exists()


@pytest.mark.django_db
def test_a_skip_request_for_a_record_the_partition_moved_past_is_void(letters: list[Any]) -> None:
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=0)
    assigned = frozenset({A0})
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    row = stuck_row(g, assigned)
    stuck_partition_request_skip(stuck_id=row.pk, actor="ops@example.com")
    g.report(GROUP, assigned)
    g.moved_to(consumer, A0, 8)
    g.block(consumer, A0, 9, OUTAGE, message(A0, 9))  # stuck again, at another record

    g.apply_skip_requests(consumer, assigned, lambda tp, offset: pytest.fail("skipped"))

    assert letters == [] and g.blocked[A0].offset == 9


@pytest.mark.django_db
def test_a_skip_whose_dead_letter_fails_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes: list[Exception | None] = [OUTAGE, None]

    def dead_letter(msg: codec.IncomingMessage, **kw: Any) -> None:
        outcome = outcomes.pop(0)
        if outcome:
            raise outcome

    monkeypatch.setattr(gate, "dead_letter", dead_letter)
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=0)
    assigned = frozenset({A0})
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    row = stuck_row(g, assigned)
    stuck_partition_request_skip(stuck_id=row.pk, actor="ops@example.com")
    g.report(GROUP, assigned)
    skipped_to: list[tuple[TopicPartition, int]] = []

    g.apply_skip_requests(consumer, assigned, lambda tp, offset: skipped_to.append((tp, offset)))
    assert skipped_to == [] and g.is_blocked(A0)

    g.apply_skip_requests(consumer, assigned, lambda tp, offset: skipped_to.append((tp, offset)))
    assert skipped_to == [(A0, 8)] and not g.is_blocked(A0) and outcomes == []


@pytest.mark.django_db
def test_the_row_of_a_partition_that_moves_again_is_deleted() -> None:
    consumer, g = PausingConsumer(), new_gate(stuck_after_s=0)
    assigned = frozenset({A0})
    g.block(consumer, A0, 7, OUTAGE, message(A0, 7))
    stuck_row(g, assigned)

    g.moved_to(consumer, A0, 8)
    g.report(GROUP, assigned)

    assert not StuckPartition.objects.filter(group=GROUP).exists()
