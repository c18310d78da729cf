"""No record blocks its partition: a record too large to hand on goes to the DLQ as a reference,
one that cannot be dispatched is reported stuck (bridge /healthz, the gauge, web /health) until
an operator skips it from the admin, and neither holds up the other partitions."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client
from kafka import KafkaProducer

from bridge import topics
from bridge.models import DeadLetter, OutboxEvent, OversizedRecord, StuckPartition
from core.roles import OPERATORS
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, subject_is
from tests.support.private_redis import PrivateRedis
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow  # a lifecycle test: `make test` runs it, `make test-fast` does not

REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
DLQ = topics.PAYMENTS_DLQ.name
KIB = 1024
MIB = 1024 * KIB
PARTITION = 5
OTHERS = [p for p in range(topics.PAYMENT_REQUESTED.partitions) if p != PARTITION][:6]


@pytest.fixture
def big_producer(stack: Stack) -> Iterator[KafkaProducer]:
    """A client producer that may send records of several MiB (the broker accepts them)."""
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, max_request_size=8 * MIB)
    yield producer
    producer.close()


def send(producer: KafkaProducer, value: bytes, *, key: str, partition: int | None = None, **kw: Any) -> None:
    producer.send(REQUESTED, key=key.encode(), value=value, partition=partition, **kw).get(timeout=30)


def payment_with_blob(size: int) -> dict[str, Any]:
    """A valid payment request whose metadata carries `size` bytes (fields beyond are kept)."""
    return payment_request(metadata={"attachment": "x" * size})


def gauge(text: str, partition: int) -> float | None:
    match = re.search(
        rf'^bridge_partition_stuck\{{partition="{partition}",topic="{re.escape(REQUESTED)}"\}} (\S+)$',
        text,
        re.MULTILINE,
    )
    return float(match.group(1)) if match else None


def test_a_record_too_large_to_hand_on_goes_to_the_dlq_as_a_reference_and_the_partition_moves_on(
    live: Stack, collector: Collector, big_producer: KafkaProducer
) -> None:
    # The limits lowered so that records of a few hundred KiB play the 12 MiB record's part: the
    # bridge's producer refuses dead letters over 1 MiB, and it hands nothing over 256 KiB to Redis.
    live.reconfigure({"KAFKA_MAX_REQUEST_BYTES": str(1 * MIB), "BRIDGE_MAX_HANDOFF_BYTES": str(256 * KIB)})
    try:
        started = datetime.now(UTC)
        poison_key, big_key = f"huge-{uuid.uuid4().hex[:8]}", f"big-{uuid.uuid4().hex[:8]}"
        poison = b"{not json " + b"z" * (1 * MIB + 300 * KIB)  # cannot be dead-lettered whole
        big = structured(REQUESTED, payment_with_blob(400 * KIB))  # valid, too large to hand to Celery
        behind = payment_request()
        send(big_producer, poison, key=poison_key, partition=PARTITION, headers=[("x-trace", b"t-9")])
        send(big_producer, big, key=big_key, partition=PARTITION)
        send(big_producer, structured(REQUESTED, behind), key=behind["paymentId"], partition=PARTITION)
        others = [payment_request() for _ in range(6)]
        for n, other in enumerate(others):  # on other partitions than the one held up
            send(big_producer, structured(REQUESTED, other), key=other["paymentId"], partition=OTHERS[n])

        # Behind them on the same partition, and on other keys: processed.
        for payment in (behind, *others):
            collector.wait_for(PROCESSED, subject_is(payment["paymentId"]), timeout_s=90)

        [ref] = collector.wait_for(DLQ, subject_is(poison_key))
        assert ref.headers["dlq-original-size"] == str(len(poison)).encode()
        assert ref.value == poison[: 64 * KIB]
        assert ref.headers["x-trace"] == b"t-9"
        assert ref.headers["dlq-reason"] == b"invalid_json"
        assert ref.headers["dlq-original-partition"] == str(PARTITION).encode()
        [big_ref] = collector.wait_for(DLQ, subject_is(big_key))
        assert big_ref.headers["dlq-reason"] == b"too_large"
        assert int(big_ref.headers["dlq-original-size"]) == len(big)
        assert len(big_ref.value) == 64 * KIB

        whole = OversizedRecord.objects.get(topic=REQUESTED, partition=PARTITION, key=poison_key.encode())
        assert bytes(whole.value) == poison and whole.size == len(poison)
        assert int(ref.headers["dlq-original-offset"]) == whole.offset
        assert bytes(OversizedRecord.objects.get(key=big_key.encode()).value) == big
        assert DeadLetter.objects.filter(key=poison_key.encode(), reason="invalid_json").exists()

        # Replaying the references republishes the whole stored values.
        call_command("dlq_replay", "--topic", DLQ, "--since", started.isoformat())
        replayed = collector.wait_for(REQUESTED, subject_is(poison_key), count=2)[-1]
        assert replayed.value == poison
        assert not any(k.startswith("dlq-") for k in replayed.headers)
    finally:
        live.reconfigure({})


@pytest.fixture
def refusing_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A Redis of the test's own that refuses any value over 1 MiB, as a broker refusal does
    (`proto-max-bulk-len`): a task carrying such an event can never be queued."""
    if not PrivateRedis.available():
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path / "redis.log").start()
    redis.Redis.from_url(server.url).config_set("proto-max-bulk-len", "1mb")
    yield server
    server.stop()


def probe(live: Stack, path: str) -> requests.Response:
    return requests.get(live.probe_url("bridge", path), timeout=10)


def names_partition(body: Any) -> bool:
    return f"'topic': '{REQUESTED}', 'partition': {PARTITION}" in str(body)


def test_a_record_that_cannot_be_dispatched_is_reported_stuck_and_an_operator_skips_it(
    live: Stack,
    collector: Collector,
    big_producer: KafkaProducer,
    refusing_redis: PrivateRedis,
    settings: Any,
) -> None:
    live.reconfigure(
        {"CELERY_BROKER_URL": refusing_redis.url, "BRIDGE_STUCK_AFTER_S": "5", "HEALTH_MAX_SILENCE_S": "5"}
    )
    settings.CELERY_BROKER_URL = refusing_redis.url  # the web /health reads the heartbeats there
    web = Client()
    try:
        refused = payment_with_blob(900 * KIB)  # base64 in the Celery message: over 1 MiB
        behind = payment_request()
        refused_value = structured(REQUESTED, refused)
        send(big_producer, refused_value, key=refused["paymentId"], partition=PARTITION)
        send(big_producer, structured(REQUESTED, behind), key=behind["paymentId"], partition=PARTITION)
        others = [payment_request() for _ in range(6)]
        for n, other in enumerate(others):  # on other partitions than the one held up
            send(big_producer, structured(REQUESTED, other), key=other["paymentId"], partition=OTHERS[n])

        # The other partitions flow while this one cannot.
        for other in others:
            collector.wait_for(PROCESSED, subject_is(other["paymentId"]), timeout_s=90)

        stuck = wait_until(
            lambda: (
                (r := probe(live, "/healthz")).status_code == 503 and names_partition(r.json()) and r.json()
            ),
            timeout_s=60,
            what="bridge /healthz 503 naming the stuck partition",
        )
        [named] = stuck["checks"]["partitions"]["stuck"]
        assert named["topic"] == REQUESTED and named["partition"] == PARTITION
        assert gauge(probe(live, "/metrics").text, PARTITION) == 1.0

        row = wait_until(
            lambda: StuckPartition.objects.filter(topic=REQUESTED, partition=PARTITION).first(),
            timeout_s=30,
            what="the stuck partition reported for the web",
        )
        health = web.get("/health")
        assert health.status_code == 503, health.content
        body = health.json()
        assert body["checks"]["stuck_partitions"]["status"] == "down"
        assert f"{REQUESTED}@{PARTITION}" in body["checks"]["stuck_partitions"]["error"]
        assert not collector.matching(PROCESSED, subject_is(behind["paymentId"]))  # held behind it

        # An operator skips it from the admin.
        operator = get_user_model().objects.create_user(f"op-{uuid.uuid4().hex[:6]}", is_staff=True)
        operator.groups.add(Group.objects.get(name=OPERATORS))
        admin = Client()
        admin.force_login(operator)
        answer = admin.post(
            "/admin/bridge/stuckpartition/",
            {"action": "skip_to_dlq", "_selected_action": [row.pk]},
            follow=True,
        )
        assert answer.status_code == 200
        assert "Asked the bridge to skip" in answer.content.decode()
        audit = OutboxEvent.objects.get(topic=topics.AUDIT_COMPLIANCE_EVENTS.name, key=str(row))
        assert f"user:{operator.get_username()}" in bytes(audit.value).decode()

        [dead] = collector.wait_for(DLQ, subject_is(refused["paymentId"]), timeout_s=60)
        assert dead.headers["dlq-reason"] == b"skipped_by_operator"
        assert dead.value == refused_value
        assert int(dead.headers["dlq-original-offset"]) == row.offset
        collector.wait_for(PROCESSED, subject_is(behind["paymentId"]), timeout_s=60)

        wait_until(
            lambda: gauge(probe(live, "/metrics").text, PARTITION) == 0.0, timeout_s=30, what="gauge 0"
        )
        assert probe(live, "/healthz").json()["checks"]["partitions"]["status"] == "ok"
        wait_until(
            lambda: not StuckPartition.objects.filter(pk=row.pk).exists(), timeout_s=30, what="row cleared"
        )
        assert web.get("/health").json()["checks"]["stuck_partitions"]["status"] == "ok"

        # Redis paused: /healthz names Redis and the partitions waiting on it.
        refusing_redis.process.send_signal(19)  # SIGSTOP
        try:
            waiting = payment_request()
            send(big_producer, structured(REQUESTED, waiting), key=waiting["paymentId"], partition=PARTITION)
            seen: list[Any] = []

            def redis_named_down_with_the_partition() -> Any:
                # The record's partition waits once the bridge has polled it: records of other
                # partitions (the earlier payment's results) may be the ones in hand first.
                response = probe(live, "/healthz")
                seen.append(response.text)
                body = response.json()
                check = body["checks"]["redis"]
                waiting = [
                    {"topic": w["topic"], "partition": w["partition"]}
                    for w in check.get("waiting_partitions", [])
                ]
                named = response.status_code == 503 and check["status"] == "down"
                return named and {"topic": REQUESTED, "partition": PARTITION} in waiting and body

            try:
                paused = wait_until(
                    redis_named_down_with_the_partition,
                    timeout_s=60,
                    what="bridge /healthz 503 naming Redis and the partition waiting on it",
                )
            except TimeoutError:
                pytest.fail(f"/healthz never named Redis down with the partition; last answers: {seen[-2:]}")
            check = paused["checks"]["redis"]
            assert "Timeout" in check["error"] or "Connection" in check["error"], check
        finally:
            refusing_redis.process.send_signal(18)  # SIGCONT
        collector.wait_for(PROCESSED, subject_is(waiting["paymentId"]), timeout_s=90)
    finally:
        live.reconfigure({})
