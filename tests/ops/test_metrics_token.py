"""METRICS_TOKEN on the probe servers of the bridge and the worker, as production runs them:
`/metrics` only with the bearer token, `/healthz` open to the orchestrator but without details."""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

import pytest
import requests
from pytest_django.fixtures import Settings

from bridge.embedded import free_port
from core.probes import Heartbeat, ProbeServer, bearer_authorized
from tests.conftest import WORKER_QUEUES, Stack
from tests.ops.conftest import METRICS_TOKEN, production_env, wait_for_http
from tests.support.private_redis import PrivateRedis
from tests.support.processes import Proc, celery, manage
from tests.support.waiting import wait_until

BEARER = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def assert_guarded(base: str, metric: str, check: str) -> None:
    """`/metrics` 401 without the token (or with a wrong one) and served with it; `/healthz`
    answering its status to anyone and its checks to the token's holder."""
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": METRICS_TOKEN}):
        refused = requests.get(base + "/metrics", headers=headers, timeout=5)
        assert refused.status_code == 401 and metric not in refused.text, (headers, refused.text[:200])
    served = requests.get(base + "/metrics", headers=BEARER, timeout=5)
    assert served.status_code == 200 and metric in served.text

    bare = requests.get(base + "/healthz", timeout=5)
    assert bare.status_code in (200, 503) and set(bare.json()) == {"status"}
    detailed = requests.get(base + "/healthz", headers=BEARER, timeout=5).json()
    assert check in detailed["checks"], detailed


def healthy(base: str) -> bool:
    return requests.get(base + "/healthz", timeout=5).status_code == 200


def test_the_token_is_compared_whole_and_only_as_a_bearer_token() -> None:
    assert bearer_authorized(f"Bearer {METRICS_TOKEN}", METRICS_TOKEN)
    assert bearer_authorized(f"bearer  {METRICS_TOKEN} ", METRICS_TOKEN)
    for header in (
        None,
        "",
        METRICS_TOKEN,
        f"Token {METRICS_TOKEN}",
        f"Bearer {METRICS_TOKEN[:-1]}",
        "Bearer ",
    ):
        assert not bearer_authorized(header, METRICS_TOKEN), header
    assert bearer_authorized(None, ""), "no token configured (development): nothing asked for"


@pytest.mark.django_db  # /metrics counts outbox_pending in the database
def test_a_probe_server_takes_the_metrics_token_setting(settings: Settings) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    heartbeat = Heartbeat(max_silence_s=60)
    server = ProbeServer(port=free_port(), addr="127.0.0.1", checks={"loop": heartbeat.check}).start()
    try:
        assert_guarded(f"http://127.0.0.1:{server.port}", "outbox_pending", "loop")
    finally:
        server.stop()


@pytest.mark.slow  # starts and stops processes of its own: `make test` runs it
def test_production_worker_and_bridge_serve_metrics_only_with_the_token(
    stack: Stack, private_redis: PrivateRedis, tmp_path: Path
) -> None:
    # A private Redis and a consumer group of its own: this bridge's dispatches reach no worker of
    # the shared stack, and it takes no partition from the stack's bridge.
    worker_port, bridge_port = free_port(), free_port()
    env = production_env(
        stack.env,
        CELERY_BROKER_URL=private_redis.url,
        WORKER_METRICS_PORT=str(worker_port),
        BRIDGE_METRICS_PORT=str(bridge_port),
    )
    worker = Proc(
        "token-worker",
        celery(
            "worker",
            "-Q",
            WORKER_QUEUES,
            "-c",
            "1",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"token-{uuid.uuid4().hex[:6]}@%h",
        ),
        env,
        tmp_path,
    ).start()
    bridge = Proc(
        "token-bridge",
        manage("run_bridge", "--no-relay", "--group", f"token-test-{uuid.uuid4().hex[:8]}"),
        env,
        tmp_path,
    ).start()
    try:
        for proc, port, metric, check in (
            (worker, worker_port, "payments_processed_total", "event_loop"),
            (bridge, bridge_port, "bridge_dispatch_total", "consumer_loop"),
        ):
            base = f"http://127.0.0.1:{port}"
            wait_for_http(base + "/healthz", proc=proc)
            wait_until(functools.partial(healthy, base), timeout_s=60, what=f"{proc.name} healthy")
            assert_guarded(base, metric, check)
    finally:
        bridge.stop()
        worker.stop()
