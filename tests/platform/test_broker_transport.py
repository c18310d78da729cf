"""The broker transport (core/broker.py) against kombu's stock Redis transport, on the
state a worker is in when Redis goes away.

Celery handles a lost broker with `Connection.collect()` and then `close()`. `collect()` closes the
transport's channels until one fails on the dead Redis, then detaches the transport
(`transport.client = None`), so a channel holding an unacknowledged task can still be open. Closing
that channel restores the task through a new pool, and so does acknowledging it later; stock kombu
builds that pool's parameters from `transport.client` and raises AttributeError, which Celery does
not treat as a connection error: the worker exits. Our transport must raise a redis ConnectionError
(which Celery retries) or nothing, and lose no message.

The stock case asserts the bug is still there: when a kombu release fixes it, that case fails and
`core.broker` can go.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from kombu import Connection, Exchange, Producer, Queue
from kombu.message import Message
from kombu.transport import redis as kombu_redis

from core import broker
from tests.support.private_redis import PrivateRedis
from tests.support.waiting import wait_until

pytestmark = pytest.mark.timeout(60)

QUEUE = Queue("broker-transport-test", Exchange("broker-transport-test", "direct"), "broker-transport-test")
DETACHED = "'NoneType' object has no attribute 'hostname'"


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not PrivateRedis.available():
        pytest.skip("redis-server is not installed")
    # Persistent: the unacknowledged messages must survive the stop and start below.
    server = PrivateRedis(tmp_path / "redis.log", persistent=True).start()
    yield server
    server.stop()


def error_of(step: Callable[[], object]) -> Exception | None:
    try:
        step()
    except Exception as exc:
        return exc
    return None


def unacked(message: Message | None) -> Message:
    assert message is not None, "the queue was empty"
    return message


def redeliver_all(url: str) -> list[object]:
    """What a worker would get back: the unacknowledged messages once their visibility timeout is
    over (0 here), then everything in the queue."""
    with Connection(url, transport=broker.Transport, transport_options={"visibility_timeout": 0}) as conn:
        channel = conn.channel()
        channel.qos.restore_visible()
        payloads = []
        while (message := QUEUE(channel).get(no_ack=True)) is not None:
            payloads.append(message.payload)
        return payloads


@pytest.mark.parametrize(
    ("transport", "fixed"),
    [
        pytest.param(kombu_redis.Transport, False, id="kombu-stock-has-the-bug"),
        pytest.param(broker.Transport, True, id="kafka-platform"),
    ],
)
def test_closing_or_acking_after_collect_raises_a_connection_error_and_loses_nothing(
    redis_server: PrivateRedis, transport: type[kombu_redis.Transport], fixed: bool
) -> None:
    conn = Connection(redis_server.url, transport=transport)
    assert type(conn.transport) is transport
    task_channel = conn.channel()  # the worker's task consumer
    other_channel = conn.channel()  # closed first by collect(), and fails on the dead Redis
    producer = Producer(task_channel)
    producer.publish({"n": 1}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE])
    producer.publish({"n": 2}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key)
    task = unacked(QUEUE(task_channel).get(no_ack=False))
    other = unacked(QUEUE(other_channel).get(no_ack=False))
    assert (task.payload, other.payload) == ({"n": 1}, {"n": 2})

    redis_server.stop()
    conn.collect()
    # The state the worker crashed in: transport detached, a channel with an unacked task still open.
    assert other_channel.closed
    assert not task_channel.closed
    assert task_channel.connection.client is None
    assert task_channel.qos._delivered

    close_error = error_of(task_channel.close)  # Celery's Connection.close() does this
    redis_server.start()
    ack_error = error_of(task.ack)  # the task ran through the outage and finishes after it

    if fixed:
        assert close_error is None or isinstance(close_error, redis.exceptions.ConnectionError), close_error
        assert ack_error is None, ack_error
        # The acknowledged task is gone; the other one waits in the unacked set for its redelivery.
        assert redeliver_all(redis_server.url) == [{"n": 2}]
    else:
        assert isinstance(close_error, AttributeError) and DETACHED in str(close_error), (
            f"kombu's Redis transport no longer fails on a detached transport ({close_error!r}): "
            "core.broker may no longer be needed"
        )
        assert isinstance(ack_error, AttributeError) and DETACHED in str(ack_error), ack_error
        # Redis still holds both, but a worker hitting this AttributeError has exited.
        assert sorted(redeliver_all(redis_server.url), key=str) == [{"n": 1}, {"n": 2}]
    conn.release()


@pytest.mark.parametrize(
    ("transport", "fixed"),
    [
        pytest.param(kombu_redis.Transport, False, id="kombu-stock-loses-it"),
        pytest.param(broker.Transport, True, id="kafka-platform"),
    ],
)
def test_a_task_taken_just_before_redis_stops_is_put_back_on_reconnection(
    redis_server: PrivateRedis, transport: type[kombu_redis.Transport], fixed: bool
) -> None:
    """BRPOP has removed the task from its queue; Redis stops before the worker records it as
    unacknowledged. Stock kombu drops it with the connection; ours puts it back at the head of its
    queue when the process's next channel opens."""
    conn = Connection(redis_server.url, transport=transport)
    channel = conn.channel()
    Producer(channel).publish(
        {"n": 1}, exchange=QUEUE.exchange, routing_key=QUEUE.routing_key, declare=[QUEUE]
    )
    seen: list[Message] = []
    channel.basic_consume(QUEUE.name, no_ack=False, callback=seen.append, consumer_tag="worker")
    conn.transport.cycle._register_BRPOP(channel)  # what the worker's event loop does: sends BRPOP
    client = redis.Redis.from_url(redis_server.url)
    # The reply is on its way once the queue is empty (BRPOP has taken the task).
    wait_until(lambda: client.llen(QUEUE.name) == 0, timeout_s=10, what="BRPOP took the task")
    client.close()
    redis_server.stop()

    read_error = error_of(channel._brpop_read)  # the worker reads the task and records it: refused
    assert isinstance(read_error, redis.exceptions.ConnectionError), read_error
    assert seen == [], "the task reached the consumer without being recorded as unacknowledged"
    conn.collect()
    redis_server.start()

    # The worker reconnects: its next connection's channel.
    with Connection(redis_server.url, transport=transport) as again:
        again.channel()
    if fixed:
        assert redeliver_all(redis_server.url) == [{"n": 1}]
    else:
        assert redeliver_all(redis_server.url) == [], (
            "kombu's Redis transport no longer loses a task taken as Redis stops: core.broker.QoS "
            "may no longer be needed"
        )
