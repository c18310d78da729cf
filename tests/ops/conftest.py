"""Fixtures of the operations tests: production-mode processes, a private Redis, probe helpers."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bridge.embedded import free_port
from tests.conftest import Stack
from tests.support.private_redis import PrivateRedis
from tests.support.processes import VENV_BIN, Proc

PRODUCTION_SECRET = secrets.token_urlsafe(50)
# What Prometheus sends as `Authorization: Bearer ...` to /metrics and the detailed /health.
METRICS_TOKEN = secrets.token_urlsafe(32)
# Everything production refuses to start without (kafka_platform/production.py).
PRODUCTION_SETTINGS = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": PRODUCTION_SECRET,
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
    "WEBHOOK_SIGNING_SECRET": "whsec_" + secrets.token_urlsafe(32),
    "AUDIT_CHECKPOINT_KEY": secrets.token_urlsafe(32),
    "EMAIL_HOST": "smtp.example.invalid",
    "NOTIFICATIONS_SMS_PROVIDER": "notifications.providers.twilio.TwilioSmsProvider",
    "NOTIFICATIONS_PUSH_PROVIDER": "notifications.providers.expo.ExpoPushProvider",
    "METRICS_TOKEN": METRICS_TOKEN,
    "PLATFORM_EVENT_KEY": secrets.token_urlsafe(32),
    # The tests' broker is the embedded one, over PLAINTEXT, and a single broker.
    "PLATFORM_ALLOW_INSECURE_KAFKA": "1",
    "KAFKA_TOPIC_REPLICATION_FACTOR": "1",
    "PLATFORM_ALLOW_UNREPLICATED_KAFKA": "1",
}


def production_env(base: dict[str, str], **overrides: str) -> dict[str, str]:
    """The stack's environment as production runs it: DEBUG off, real secrets and providers."""
    env = dict(base)
    env.update(PRODUCTION_SETTINGS)
    env.update(overrides)
    return env


def wait_for_http(url: str, *, timeout_s: float = 60.0, proc: Proc | None = None, **kwargs: Any) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            requests.get(url, timeout=5, allow_redirects=False, **kwargs)
            return
        except (requests.ConnectionError, requests.Timeout):
            if proc is not None and not proc.running:
                raise RuntimeError(f"{proc.name} exited:\n{proc.log_tail()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The lines of a process log that are JSON objects (a Celery banner, for one, is not)."""
    lines = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not PrivateRedis.available():
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(tmp_path / "redis.log").start()
    yield server
    server.stop()


@dataclass(frozen=True)
class WebProcess:
    url: str
    proc: Proc


@pytest.fixture(scope="session")
def production_web(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebProcess]:
    """The web process as deployed: gunicorn with gunicorn.conf.py, DEBUG off."""
    port = free_port()
    yield from serving(
        port,
        [str(VENV_BIN / "gunicorn"), "kafka_platform.wsgi:application"],
        production_env(stack.env, GUNICORN_BIND=f"127.0.0.1:{port}", GUNICORN_THREADS="2"),
        tmp_path_factory.mktemp("web-logs"),
    )


def serving(port: int, command: list[str], env: dict[str, str], logs: Path) -> Iterator[WebProcess]:
    """A web process started with `command` on `port`, yielded once /live answers, then stopped."""
    proc = Proc("web", command, env, logs).start()
    web = WebProcess(f"http://127.0.0.1:{port}", proc)
    try:
        wait_for_http(web.url + "/live", proc=proc)
        yield web
    finally:
        proc.stop()
