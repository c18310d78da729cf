"""The gateway's circuit breaker, with its state in the real Redis and time on a fake clock."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest
from django.conf import settings

from core.circuit_breaker import CircuitBreaker, CircuitOpen
from payments.gateway import GatewayTimeout, gateway_breaker
from tests.conftest import TEST_REDIS_URL
from tests.support.clock import FakeClock

RESET_S = 30.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> Iterator[CircuitBreaker]:
    settings.CELERY_BROKER_URL = TEST_REDIS_URL
    # The gateway's own breaker (its keys, client and probe slot), under a name of this test's.
    b = gateway_breaker(clock=clock)
    b.name = f"test-{uuid.uuid4().hex[:6]}"
    b.state_key, b.probe_key = f"circuit:{b.name}", f"circuit:{b.name}:probe"
    b.failure_threshold, b.reset_timeout_s = 3, RESET_S
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


def test_stays_open_until_the_reset_timeout_has_passed(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    clock.advance(RESET_S - 0.001)
    assert breaker.state() == "open"
    with pytest.raises(CircuitOpen, match="is open"):
        breaker.call(lambda: "early")
    clock.advance(0.002)
    assert breaker.state() == "half_open"
    assert breaker.call(lambda: "probed") == "probed"


def test_a_success_resets_the_count(breaker: CircuitBreaker) -> None:
    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    assert breaker.call(lambda: "ok") == "ok"
    for _ in range(2):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    assert breaker.state() == "closed"


def test_half_open_lets_one_probe_through_and_its_success_closes(
    breaker: CircuitBreaker, clock: FakeClock
) -> None:
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    clock.advance(RESET_S)
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


def test_a_failed_probe_opens_the_circuit_again(breaker: CircuitBreaker, clock: FakeClock) -> None:
    for _ in range(3):
        with pytest.raises(GatewayTimeout):
            breaker.call(timeout)
    clock.advance(RESET_S)
    with pytest.raises(GatewayTimeout):
        breaker.call(timeout)
    assert breaker.state() == "open"
    # Open for a whole cooldown again, counted from the probe's failure.
    clock.advance(RESET_S - 0.001)
    assert breaker.state() == "open"
    clock.advance(0.002)
    assert breaker.state() == "half_open"
