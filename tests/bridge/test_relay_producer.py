"""The outbox relay replaces its producer after a Kafka error: an idempotent producer whose
requests timed out while the broker was paused can stay stuck after the broker is back (every
flush timing out, for minutes), while a new producer publishes at once (bridge/relay.py)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from kafka.errors import KafkaError, KafkaTimeoutError, MessageSizeTooLargeError
from pytest_django.fixtures import Settings

from bridge import clients, outbox
from bridge import relay as relay_module
from bridge.embedded import EmbeddedBroker
from bridge.relay import OutboxRelay
from tests.bridge.test_outbox import record
from tests.support.waiting import wait_until


class FakeProducer:
    def __init__(self, number: int) -> None:
        self.number = number
        self.closed_with: float | None = None

    def close(self, timeout: float | None = None) -> None:
        self.closed_with = timeout


class QuietListener:
    closed = False

    def notifies(self, *, timeout: float, stop_after: int) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


def run_relay(
    monkeypatch: Any,
    factory: Callable[[], FakeProducer],
    relay_pending: Callable[..., int],
    until: Callable[[], object],
    what: str,
) -> None:
    """Run a relay with `factory`'s producers and `relay_pending` in place of the outbox, no
    database listener and short retries, until `until()` holds; then stop it."""
    monkeypatch.setattr(relay_module, "relay_pending", relay_pending)
    monkeypatch.setattr(OutboxRelay, "_listen", lambda self: QuietListener())
    monkeypatch.setattr(relay_module, "RETRY_FIRST_S", 0.01)
    stopping = threading.Event()
    relay = OutboxRelay(stopping, poll_interval_s=0.01, producer_factory=factory)  # type: ignore[arg-type]
    relay.start()
    try:
        wait_until(until, timeout_s=10, what=what)
        alive = relay.is_alive()
    finally:
        stopping.set()
        relay.join(timeout=10)
    assert alive, "the relay thread died"


def test_a_kafka_error_replaces_the_producer_and_the_next_attempt_publishes_with_the_new_one(
    monkeypatch: Any,
) -> None:
    built: list[FakeProducer] = []
    published_with: list[int] = []

    def factory() -> FakeProducer:
        built.append(FakeProducer(len(built) + 1))
        return built[-1]

    def relay_pending(*, producer: FakeProducer) -> int:
        if producer.number == 1:
            raise KafkaTimeoutError("Timeout after waiting for 30 secs.")  # the stuck flush
        published_with.append(producer.number)
        return 0

    run_relay(monkeypatch, factory, relay_pending, lambda: published_with, "a publish after the error")

    assert published_with[0] == 2, "the attempt after the error used a new producer"
    assert built[0].closed_with == 0, "the stuck producer was closed without waiting on it"
    assert len(built) == 2, "one replacement for one error, then the new producer is kept"
    assert built[1].closed_with == 5, "the relay's producer is flushed and closed when it stops"


def test_a_database_error_keeps_the_producer(monkeypatch: Any) -> None:
    from django.db import OperationalError

    built: list[FakeProducer] = []
    calls: list[int] = []

    def factory() -> FakeProducer:
        built.append(FakeProducer(len(built) + 1))
        return built[-1]

    def relay_pending(*, producer: FakeProducer) -> int:
        calls.append(producer.number)
        if len(calls) == 1:
            raise OperationalError("the database went away")
        return 0

    run_relay(monkeypatch, factory, relay_pending, lambda: len(calls) >= 2, "a second attempt")

    assert calls[:2] == [1, 1] and len(built) == 1


class Future:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


class ExpiringProducer:
    """A producer whose flush returns while records fail one by one, as a stuck idempotent
    producer's do once their delivery timeout expires; `errors` by record key."""

    def __init__(self, errors: dict[str, Exception]) -> None:
        self.errors = errors

    def send(self, topic: str, *, key: bytes, **_: Any) -> Future:
        return Future(self.errors.get(key.decode()))

    def flush(self, timeout: float | None = None) -> None:
        return None


@pytest.mark.django_db
def test_records_that_expire_one_by_one_fail_the_batch_so_the_relay_replaces_its_producer() -> None:
    ok, late = record("relay-ok"), record("relay-late")
    stuck = ExpiringProducer({late.key: KafkaTimeoutError("Batch expired")})

    with pytest.raises(outbox.PublishFailed, match="events not published: KafkaTimeoutError"):
        outbox.relay_pending(producer=stuck)  # type: ignore[arg-type]

    ok.refresh_from_db()
    late.refresh_from_db()
    assert ok.sent_at is not None, "what was published is marked, though the batch failed"
    assert late.sent_at is None and late.attempts == 1 and "Batch expired" in late.last_error
    assert isinstance(outbox.PublishFailed("x"), KafkaError), "the relay's Kafka-error path replaces it"


@pytest.mark.django_db
def test_a_record_too_large_for_any_producer_leaves_the_producer_in_place() -> None:
    big = record("relay-big")
    producer = ExpiringProducer({big.key: MessageSizeTooLargeError("too large")})

    outbox.relay_pending(producer=producer)  # type: ignore[arg-type]  # raises nothing
    big.refresh_from_db()
    assert big.sent_at is None and big.attempts == 1


class ClosesOnlyWhenFlushed(FakeProducer):
    """Closes as kafka-python 3.0.12's producer does with a record in flight: close() flushes
    first and raises when that flush times out, before it has closed anything."""

    def close(self, timeout: float | None = None) -> None:
        raise KafkaTimeoutError("Timeout waiting for future")


def test_a_producer_whose_close_raises_is_still_replaced_and_the_relay_lives_on(monkeypatch: Any) -> None:
    built: list[FakeProducer] = []
    published_with: list[int] = []

    def factory() -> FakeProducer:
        built.append((ClosesOnlyWhenFlushed if not built else FakeProducer)(len(built) + 1))
        return built[-1]

    def relay_pending(*, producer: FakeProducer) -> int:
        if producer.number == 1:
            raise KafkaTimeoutError("Timeout after waiting for 30 secs.")
        published_with.append(producer.number)
        return 0

    run_relay(monkeypatch, factory, relay_pending, lambda: published_with, "a publish after the error")
    assert published_with[0] == 2


def test_the_shared_producer_is_dropped_though_its_close_raises(monkeypatch: Any) -> None:
    monkeypatch.setattr(clients, "_producer", ClosesOnlyWhenFlushed(1))
    monkeypatch.setattr(clients, "_producer_pid", os.getpid())
    monkeypatch.setattr(clients, "new_producer", lambda: FakeProducer(2))

    clients.discard_shared_producer()  # raises nothing

    assert clients.shared_producer().number == 2, "the next publish gets a new producer"  # type: ignore[attr-defined]


@pytest.mark.slow
def test_a_real_producer_with_a_record_in_flight_is_closed_at_once(
    kafka_broker: EmbeddedBroker, settings: Settings
) -> None:
    """Against the broker: kafka-python's own close(timeout=0) raises with the record in flight and
    leaves its I/O thread running (the premise; if an upgrade fixes it, this says so);
    close_producer returns at once with the thread stopped and the record failed, not pending."""
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap
    topic = f"close-now-{uuid.uuid4().hex[:8]}"
    producer = clients.new_producer()
    producer.send(topic, value=b"metadata").get(timeout=30)  # the topic exists, its metadata is known
    future = producer.send(topic, value=b"in flight")

    with pytest.raises(KafkaTimeoutError):
        producer.close(timeout=0)
    assert producer._sender.is_alive(), "kafka-python closed nothing"

    started = time.monotonic()
    clients.close_producer(producer)
    assert time.monotonic() - started < clients.FORCED_CLOSE_JOIN_S
    assert not producer._sender.is_alive(), "its I/O thread and sockets are gone"
    assert future.is_done, "the record in flight is settled (published or failed), not left pending"
