"""The gateway's circuit breaker, with its state in the real Redis."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.conf import settings

from kafka_platform.circuit_breaker import CircuitBreaker, CircuitOpen
from payments.gateway import GatewayTimeout
from tests.conftest import TEST_REDIS_URL


@pytest.fixture
def breaker() -> CircuitBreaker:
    settings.CELERY_BROKER_URL = TEST_REDIS_URL
    b = CircuitBreaker(
        f"test-{uuid.uuid4().hex[:6]}", failure_threshold=3, reset_timeout_s=0.5, counted=(GatewayTimeout,)
    )
    yield b
    b.reset()


def timeout() -> None:
    raise GatewayTimeout("slow")


def test_opens_after_consecutive_failures_and_then_fails_fast(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    calls = []
    with pytest.raises(CircuitOpen):
        breaker.call(lambda: calls.append(1))
    assert calls == [] and breaker.state() == "open"


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    assert breaker.call(lambda: "ok") == "ok"
    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    assert breaker.state() == "closed"


def test_half_open_lets_one_probe_through_and_its_success_closes(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    time.sleep(0.6)
    assert breaker.state() == "half_open"
    probe_started, release = threading.Event(), threading.Event()

    def slow_probe() -> str:
        probe_started.set()
        release.wait(5)
        return "probed"

    result: list[str] = []
    probe = threading.Thread(target=lambda: result.append(breaker.call(slow_probe)))
    probe.start()
    probe_started.wait(5)
    with pytest.raises(CircuitOpen, match="probe"):
        breaker.call(lambda: "second")
    release.set()
    probe.join()
    assert result == ["probed"] and breaker.state() == "closed"


def test_a_failed_probe_opens_the_circuit_again(breaker: CircuitBreaker) -> None:
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    time.sleep(0.6)
    with pytest.raises(GatewayTimeout):
        breaker.call(timeout)
    assert breaker.state() == "open"
