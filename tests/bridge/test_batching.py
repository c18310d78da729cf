"""Micro-batching: a backlog goes to the workers in batches and has exactly the effects that the
same events one at a time would have; a batch that fails falls back to one event per task."""

from __future__ import annotations

import signal
import uuid
from collections import Counter
from typing import Any

import pytest
from celery.canvas import Signature
from celery.exceptions import Retry
from django.db import OperationalError
from django.utils import timezone
from kafka import KafkaProducer, TopicPartition
from kombu.exceptions import OperationalError as KombuOperationalError

from audit import tasks as audit_tasks
from audit.models import AuditEvent
from audit.selectors import verify_chain
from bridge import tasks as bridge_tasks
from bridge import topics
from bridge.codec import Envelope
from ledger.models import Transaction
from payments.models import Payment, PaymentStatus, SimulatedCharge
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector
from tests.support.waiting import wait_until

REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
FAILED = topics.PAYMENT_FAILED.name


def card(token: str) -> dict[str, str]:
    return {"type": "card", "token": token}


@pytest.mark.slow
def test_a_backlog_is_dispatched_in_batches_with_one_effect_per_request(
    live: Stack, collector: Collector
) -> None:
    run = uuid.uuid4().hex[:8]
    started = timezone.now()
    tokens = ["tok_visa"] * 40 + ["tok_chargeDeclined"] * 4 + ["tok_gatewayTimeoutOnce"] * 3
    requests = [
        payment_request(paymentId=f"batch-{run}-{i}", paymentMethod=card(token))
        for i, token in enumerate(tokens)
    ]
    # The bridge is stopped while the requests arrive, so it finds a backlog when it starts.
    assert live.bridge.stop(signal.SIGTERM) == 0
    producer = KafkaProducer(bootstrap_servers=live.bootstrap)
    for i, data in enumerate(requests):
        value = structured(REQUESTED, data, event_id=f"evt-{run}-{i}")
        # Every fifth request is delivered twice (the same event), inside the same batch.
        for _ in range(2 if i % 5 == 0 else 1):
            producer.send(REQUESTED, key=data["paymentId"].encode(), value=value)
    producer.flush()
    producer.close()
    since = live.bridge.log_size() if live.bridge.log_path.exists() else 0
    live.bridge.start()

    ours = lambda r: r.key is not None and r.key.decode().startswith(f"batch-{run}-")  # noqa: E731
    collector.wait_for(PROCESSED, ours, count=43, timeout_s=120)
    collector.wait_for(FAILED, ours, count=4, timeout_s=60)
    # Every copy consumed before counting: the bridge has committed both copies of every fifth
    # request and the worker has run every task it was handed (the pipeline drained).
    live.wait_until_drained(started, collector)
    live.bridge.wait_for_log("to payments.process_payment_requested (batch of", since=since, timeout_s=5)

    outcomes = Counter(
        r.key.decode() for t in (PROCESSED, FAILED) for r in collector.matching(t, ours) if r.key
    )
    assert set(outcomes) == {d["paymentId"] for d in requests}
    assert max(outcomes.values()) == 1, "a payment announced twice"
    payments = Payment.objects.filter(payment_id__startswith=f"batch-{run}-")
    assert payments.filter(status=PaymentStatus.CAPTURED).count() == 43
    assert payments.filter(status=PaymentStatus.FAILED, failure_reason="card_declined").count() == 4
    transitions = Counter(payments.values_list("transitions__to_status", flat=True))
    assert transitions == {"requested": 47, "processing": 47, "captured": 43, "failed": 4}
    # A timeout inside a batch is retried on its own with the same key: two attempts, one capture.
    retried = SimulatedCharge.objects.filter(idempotency_key__in=[d["paymentId"] for d in requests[44:]])
    assert sorted(retried.values_list("attempts", "outcome")) == [(2, "captured")] * 3

    # Downstream, in batches too: one posting per capture, one audit record per transition.
    captured = [d["paymentId"] for d, t in zip(requests, tokens, strict=True) if t != "tok_chargeDeclined"]
    wait_until(
        lambda: (
            Transaction.objects.filter(transaction_id__in=[f"payment:{p}" for p in captured]).count() == 43
        ),
        what="the ledger postings",
    )
    wait_until(
        lambda: AuditEvent.objects.filter(subject_id__startswith=f"batch-{run}-").count() == 47 * 3,
        what="the audit records",
    )
    actions = Counter(
        AuditEvent.objects.filter(subject_id__startswith=f"batch-{run}-").values_list("action", flat=True)
    )
    assert actions == {
        "payment.requested": 47,
        "payment.processing": 47,
        "payment.captured": 43,
        "payment.failed": 4,
    }
    assert verify_chain().intact


# --- the worker's side, as a unit: the fallback when a batch fails ----------------------------------


class FakeTask:
    """Stands in for an event task: records the payloads it ran, raising for the ones marked bad."""

    name = "payments.fake_task"

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, payload: dict[str, Any]) -> None:
        self.ran.append(payload["id"])
        if payload["data"].get("bad"):
            raise ValueError("refused")


def payload(event_id: str, **data: Any) -> dict[str, Any]:
    return Envelope(
        id=event_id, type="payments.fake", source="/t", time="2026-11-23T00:00:00Z", data=data
    ).to_task_payload()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTask, list[tuple[str, Any, str]]]:
    task = FakeTask()
    sent: list[tuple[str, Any, str]] = []
    app = bridge_tasks.process_batch.app
    monkeypatch.setitem(app.tasks, FakeTask.name, task)
    monkeypatch.setattr(app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    return task, sent


def test_a_failing_batch_handler_falls_back_to_one_event_at_a_time(
    fake: tuple[FakeTask, list[tuple[str, Any, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    task, sent = fake
    attempted: list[int] = []

    def handler(events: list[Envelope]) -> None:
        attempted.append(len(events))
        raise RuntimeError("the whole batch failed")

    monkeypatch.setitem(bridge_tasks._BATCH_HANDLERS, FakeTask.name, handler)
    result = bridge_tasks.process_batch.run(
        FakeTask.name, [payload("a"), payload("b", bad=True), payload("c")]
    )
    assert attempted == [3]
    assert task.ran == ["a", "b", "c"]
    # Only the event that failed again goes on as its own task, to its domain's queue, where
    # Celery's retries and the dead-letter topic handle it as if it had never been batched.
    assert [(name, args[0]["id"], queue) for name, args, queue in sent] == [(FakeTask.name, "b", "payments")]
    assert result == {"events": 3, "batched": 0, "resent": 1}


def test_a_batch_handler_that_succeeds_runs_no_event_alone(
    fake: tuple[FakeTask, list[tuple[str, Any, str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    task, sent = fake
    seen: list[list[str]] = []
    monkeypatch.setitem(
        bridge_tasks._BATCH_HANDLERS, FakeTask.name, lambda events: seen.append([e.id for e in events])
    )
    assert bridge_tasks.process_batch.run(FakeTask.name, [payload("a"), payload("b")])["batched"] == 2
    assert seen == [["a", "b"]] and task.ran == [] and sent == []


def test_a_batch_that_fails_for_good_dead_letters_each_event(monkeypatch: pytest.MonkeyPatch) -> None:
    assert audit_tasks.record_event.name == "audit.record_event"  # registered in this process
    dead: list[str] = []
    monkeypatch.setattr(
        bridge_tasks.EventTask, "_dead_letter", lambda self, event, exc: dead.append(event.id)
    )
    bridge_tasks.process_batch.on_failure(
        RuntimeError("redis gone"), "task-id", ("audit.record_event", [payload("a"), payload("b")]), {}, None
    )
    assert dead == ["a", "b"]


@pytest.mark.parametrize(
    "outage",
    [OperationalError("connection refused"), KombuOperationalError("Error 111 connecting to Redis")],
    ids=["postgres", "redis-publish"],
)
def test_an_outage_retries_the_whole_batch_rather_than_splitting_it(
    fake: tuple[FakeTask, list[tuple[str, Any, str]]], monkeypatch: pytest.MonkeyPatch, outage: Exception
) -> None:
    """PostgreSQL away, or Redis away when the batch sends an event on: the batch is retried whole
    by Celery (it is idempotent), rather than splitting or failing and dead-lettering what it
    processed. (With the broker itself away: tests/bridge/test_outage_retries.py.)"""
    task, sent = fake
    calls: list[int] = []

    def handler(events: list[Envelope]) -> None:
        calls.append(len(events))
        raise outage

    published: list[Signature] = []
    monkeypatch.setitem(bridge_tasks._BATCH_HANDLERS, FakeTask.name, handler)
    monkeypatch.setattr(bridge_tasks.connections, "close_all", lambda: None)
    monkeypatch.setattr(Signature, "apply_async", lambda sig, *a, **kw: published.append(sig))
    batch = [FakeTask.name, [payload("a"), payload("b")]]
    # Through EventTask.__call__, as the worker runs a delivered message.
    bridge_tasks.process_batch.push_request(
        id="batch-1",
        args=batch,
        kwargs={},
        retries=0,
        called_directly=False,
        is_eager=False,
        delivery_info={},
    )
    try:
        with pytest.raises(Retry):
            bridge_tasks.process_batch(*batch)
    finally:
        bridge_tasks.process_batch.pop_request()
    [retry] = published
    assert retry.task == "bridge.process_batch" and list(retry.args) == batch
    assert calls == [2] and task.ran == [] and sent == []


def test_a_batch_of_an_unknown_task_is_dead_lettered_not_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    dead: list[str] = []
    monkeypatch.setattr(
        bridge_tasks.EventTask, "_dead_letter", lambda self, event, exc: dead.append(event.id)
    )
    bridge_tasks.process_batch.on_failure(
        KeyError("gone.task"), "task-id", ("gone.task", [payload("a")]), {}, None
    )
    assert dead == ["a"]


# --- natural batching in the bridge's poll, as a unit ------------------------------------------------


class TrickleConsumer:
    """Stands in for the Kafka consumer: one record per poll, every `gap_s`, `total` in all."""

    def __init__(self, total: int, gap_s: float) -> None:
        self.left, self.gap_s = total, gap_s

    def poll(self, timeout_ms: int, max_records: int | None = None) -> dict[str, list[object]]:
        import time

        wait = min(self.gap_s, timeout_ms / 1000)
        time.sleep(wait)
        if self.left and wait >= self.gap_s:
            self.left -= 1
            return {"tp": [object()]}
        return {}


class Load:
    """Stands in for the workers' load: a backlog shows, and the workers are busy or not."""

    def __init__(self, workers_busy: bool) -> None:
        self.busy = workers_busy

    def backlog(self) -> bool:
        return True  # the poll lingers

    def workers_busy(self, assigned: object) -> bool:
        return self.busy


def dispatcher_polling(*, workers_busy: bool) -> Any:
    from bridge.dispatcher import Dispatcher
    from bridge.gate import PartitionGate

    return Dispatcher(
        PartitionGate(retry_backoff_s=0.5, retry_backoff_max_s=10, stuck_after_s=60),
        Load(workers_busy),
        send_task=lambda name, *, args, queue: None,
        queue_for_task=lambda name: name,
        batch_max=100,
        batch_linger_ms=10,
        batch_linger_max_ms=100,
        poll_timeout_ms=500,
        max_handoff_bytes=1024,
    )


def test_a_poll_gathers_a_trickle_while_the_workers_are_busy_and_not_when_idle() -> None:
    busy = dispatcher_polling(workers_busy=True)
    gathered = sum(len(batch) for batch in busy.poll(TrickleConsumer(total=60, gap_s=0.004), set()).values())
    idle = dispatcher_polling(workers_busy=False)
    alone = sum(len(batch) for batch in idle.poll(TrickleConsumer(total=60, gap_s=0.004), set()).values())
    # About 100 ms of a record per 4 ms while busy; about 10 ms' worth when the workers are free.
    assert gathered >= 12 and alone <= 5 and gathered > 2 * alone, (gathered, alone)


def test_the_workers_are_busy_when_queued_and_unacknowledged_tasks_reach_the_bound() -> None:
    import redis as redis_lib

    from bridge.backpressure import UNACKED_KEY, Backpressure
    from tests.conftest import TEST_REDIS_URL

    client = redis_lib.Redis.from_url(TEST_REDIS_URL)
    queue = f"natural-{uuid.uuid4().hex[:6]}"
    load = Backpressure(client, lambda topic: {queue}, max_queue_depth=100, max_in_flight=2)
    assigned = {TopicPartition(REQUESTED, 0)}
    client.delete(queue, UNACKED_KEY)
    try:
        assert not load.workers_busy(assigned)
        client.rpush(queue, "task-1")
        assert not load.workers_busy(assigned)
        client.hset(UNACKED_KEY, "tag-1", "running task")
        assert load.workers_busy(assigned)
    finally:
        client.delete(queue, UNACKED_KEY)
