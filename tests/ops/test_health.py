"""Health: web /health /ready /live, the bridge's and the worker's /healthz, against real outages."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.test import Client
from pytest_django.fixtures import Settings

from bridge.embedded import EmbeddedBroker, free_port
from bridge.relay import OutboxRelay
from core.probes import Heartbeat, ProbeServer
from tests.conftest import WORKER_QUEUES, Stack
from tests.ops.conftest import wait_for_http
from tests.support.private_redis import PrivateRedis
from tests.support.processes import Proc, celery


def wait_for_status(url: str, status: int, timeout_s: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = requests.get(url, timeout=5)
        if response.status_code == status:
            return response.json()
        assert time.monotonic() < deadline, f"{url} still {response.status_code}: {response.text}"
        time.sleep(0.5)


@pytest.mark.django_db
def test_web_health_is_503_with_details_when_redis_is_stopped(
    client: Client, settings: Settings, kafka_broker: EmbeddedBroker, private_redis: PrivateRedis
) -> None:
    settings.CELERY_BROKER_URL = private_redis.url
    settings.KAFKA_BOOTSTRAP_SERVERS = kafka_broker.bootstrap

    ready = client.get("/ready")
    assert ready.status_code == 200, ready.content
    assert {name: c["status"] for name, c in ready.json()["checks"].items()} == {
        "database": "ok",
        "redis": "ok",
        "kafka": "ok",
    }
    # No bridge or worker publishes to this Redis: /health says so, the dependencies are fine.
    platform = client.get("/health")
    assert platform.status_code == 503
    checks = platform.json()["checks"]
    assert {checks[name]["status"] for name in ("database", "redis", "kafka")} == {"ok"}
    assert checks["bridges"]["status"] == "down" and "no bridge" in checks["bridges"]["error"]

    private_redis.stop()

    for path in ("/health", "/ready"):
        down = client.get(path)
        assert down.status_code == 503
        checks = down.json()["checks"]
        assert checks["redis"]["status"] == "down" and "Connection" in checks["redis"]["error"]
        assert checks["database"]["status"] == "ok" and checks["kafka"]["status"] == "ok"
    assert client.get("/live").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_bridge_healthz_reports_its_consume_loop(live: Stack) -> None:
    response = requests.get(live.probe_url("bridge", "/healthz"), timeout=5)
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert checks["consumer_loop"]["status"] == "ok"
    assert checks["consumer_loop"]["last_beat_s_ago"] < 5
    assert checks["outbox_relay"]["status"] == "ok"  # the test stack runs the relay on its own


@pytest.mark.slow
def test_worker_healthz_turns_503_while_its_broker_is_lost_and_recovers(
    stack: Stack, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    port = free_port()
    env = dict(
        stack.env,
        CELERY_BROKER_URL=private_redis.url,
        WORKER_METRICS_PORT=str(port),
        HEALTH_MAX_SILENCE_S="3",
    )
    worker = Proc(
        "probe-worker",
        celery(
            "worker",
            "-Q",
            WORKER_QUEUES,
            "-c",
            "1",
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"probe-{uuid.uuid4().hex[:6]}@%h",
        ),
        env,
        tmp_path,
    ).start()
    healthz = f"http://127.0.0.1:{port}/healthz"
    try:
        worker.wait_for_log("ready.")
        wait_for_http(healthz, proc=worker)
        assert wait_for_status(healthz, 200)["checks"]["event_loop"]["status"] == "ok"

        private_redis.stop()
        stalled = wait_for_status(healthz, 503, timeout_s=30)
        assert stalled["checks"]["event_loop"]["status"] == "stalled", stalled

        private_redis.start()
        wait_for_status(healthz, 200, timeout_s=60)
    finally:
        worker.stop()


@pytest.mark.django_db  # /metrics counts outbox_pending in the database
def test_probe_server_answers_503_once_a_heartbeat_stops_or_a_check_fails() -> None:
    now = [100.0]
    heartbeat = Heartbeat(max_silence_s=10, clock=lambda: now[0])
    relay = OutboxRelay(threading.Event())  # never started: a dead relay thread
    checks = {"loop": heartbeat.check}
    server = ProbeServer(port=free_port(), addr="127.0.0.1", checks=checks).start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        assert requests.get(url + "/healthz", timeout=5).status_code == 200
        assert "outbox_pending" in requests.get(url + "/metrics", timeout=5).text

        now[0] += 11
        stalled = requests.get(url + "/healthz", timeout=5)
        assert stalled.status_code == 503 and stalled.json()["checks"]["loop"]["status"] == "stalled"

        heartbeat.beat()
        assert requests.get(url + "/healthz", timeout=5).status_code == 200

        checks["relay"] = relay.health
        dead = requests.get(url + "/healthz", timeout=5)
        assert dead.status_code == 503 and dead.json()["checks"]["relay"]["status"] == "down"

        checks["relay"] = lambda: 1 / 0
        broken = requests.get(url + "/healthz", timeout=5)
        assert broken.status_code == 503 and "ZeroDivisionError" in broken.json()["checks"]["relay"]["error"]
    finally:
        server.stop()
