"""Proof that the running pipeline has consumed everything it was given, redeliveries included.

A test that counts effects ("once each") after a crash or a redelivery must first know that every
copy has been consumed; otherwise a duplicate still on its way would be missed by the count. The
number of copies a crash leaves is unknown, so there is no refusal to wait for one by one; what
is known is where a copy can be: in Kafka not yet handed on by the bridge, in a worker queue, held
by a worker (unacknowledged, until it ran or its visibility timeout sends it back), or written to
the outbox and not yet published. `wait_until_drained` waits until it is in none of them.
"""

from __future__ import annotations

import re
import time
from datetime import datetime

import redis
from kafka import KafkaConsumer, TopicPartition
from kombu import Connection

from bridge.routing import subscription_pattern
from core import broker
from tests.support.kafka import Collector
from tests.support.waiting import wait_until

# kombu's Redis transport keeps the tasks a worker holds, not yet acknowledged, in this hash.
UNACKED = "unacked"


def _bridge_lag(bootstrap: str, group: str) -> int:
    """Records on the bridge's topics past its group's committed offsets."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        pattern = re.compile(subscription_pattern())
        partitions = [
            TopicPartition(topic, p)
            for topic in consumer.topics()
            if pattern.match(topic)
            for p in consumer.partitions_for_topic(topic) or ()
        ]
        ends = consumer.end_offsets(partitions)
        return sum(max(ends[tp] - (consumer.committed(tp) or 0), 0) for tp in partitions)
    finally:
        consumer.close(autocommit=False)


def _held_by_redis(client: redis.Redis, queues: list[str]) -> int:
    """Tasks waiting in a worker queue or held by a worker, unacknowledged."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
        pipe.hlen(UNACKED)
        return sum(pipe.execute())


def wait_until_drained(
    *,
    bootstrap: str,
    group: str,
    redis_url: str,
    queues: list[str],
    since: datetime,
    collector: Collector | None = None,
    timeout_s: float = 120.0,
) -> float:
    """Wait until nothing is left anywhere in the pipeline: the bridge group has committed every
    record of its topics, no task is queued or held by a worker, and no outbox row written since
    `since` is unpublished; then once more, so that what the last tasks published has been
    consumed in turn. `collector`, when given, has then read everything on its topics too.
    Answers the seconds it waited."""
    from bridge.models import OutboxEvent  # the conftest imports this module before Django's apps

    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    deadline = started + timeout_s
    quiet_passes = 0
    left: dict[str, int] = {}
    while quiet_passes < 2:
        left = {
            "kafka": _bridge_lag(bootstrap, group),
            "redis": _held_by_redis(client, queues),
            "outbox": OutboxEvent.objects.filter(sent_at__isnull=True, created_at__gte=since).count(),
        }
        quiet_passes = quiet_passes + 1 if not any(left.values()) else 0
        if time.monotonic() > deadline:
            raise TimeoutError(f"the pipeline still holds work after {timeout_s}s: {left}")
        if quiet_passes < 2:
            time.sleep(0.2)
    if collector is not None:
        collector.catch_up()
    return time.monotonic() - started


def wait_until_published(collector: Collector, *, since: datetime, timeout_s: float = 60.0) -> None:
    """Wait until every outbox row written since `since` has been published, then read the
    collector's topics to their ends: whatever the work done so far wrote is then in
    `collector.records`. For a test that has proof the work ran (the state it recorded in the
    transaction that would also write the event) and asserts an event is not on Kafka, or is
    there once: what that transaction wrote is counted, not missed for being on its way."""
    from bridge.models import OutboxEvent  # the conftest imports this module before Django's apps

    wait_until(
        lambda: not OutboxEvent.objects.filter(sent_at__isnull=True, created_at__gte=since).exists(),
        timeout_s=timeout_s,
        interval_s=0.2,
        what=f"the outbox rows written since {since} published",
    )
    collector.catch_up()


def held_tasks(redis_url: str) -> list[bytes]:
    """The delivery tags of the tasks workers hold, taken and not yet acknowledged. Right after a
    worker was killed (and before another started), the tasks it held: Redis gives them out again
    only once its visibility timeout (CELERY_VISIBILITY_TIMEOUT, 10 minutes) has passed."""
    return list(redis.Redis.from_url(redis_url).hkeys(UNACKED))


def redeliver(redis_url: str, tags: list[bytes]) -> None:
    """Put the tasks `tags` back on their queues, as the broker does with a dead worker's tasks
    once their visibility timeout has passed (kombu's own restore), without waiting for it."""
    with Connection(redis_url, transport=broker.Transport) as connection:
        qos = connection.default_channel.qos
        for tag in tags:
            qos.restore_by_tag(tag)
