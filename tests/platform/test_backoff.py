"""Retry delays: the one formula, its cap and jitter, and the delays each retry loop keeps."""

from __future__ import annotations

import random

import pytest
from django.test import override_settings

from bridge.tasks import outage_retry_countdown
from core.backoff import Backoff, Jitter, backoff_delay, scheduled_delay
from payments.tasks import gateway_retry_countdown


def test_the_delay_doubles_from_first_up_to_the_cap() -> None:
    assert [backoff_delay(n, first=0.5, cap=10.0) for n in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_without_a_cap_the_delay_keeps_doubling() -> None:
    assert backoff_delay(10, first=0.01) == pytest.approx(10.24)


def test_doublings_stop_at_max_doublings() -> None:
    assert backoff_delay(8, first=0.5, cap=1000.0, max_doublings=8) == 128.0
    assert backoff_delay(20, first=0.5, cap=1000.0, max_doublings=8) == 128.0


def test_a_count_far_past_the_cap_is_the_cap() -> None:
    assert backoff_delay(5000, first=0.5, cap=10.0) == 10.0


def test_a_negative_count_is_refused() -> None:
    with pytest.raises(ValueError, match="retries"):
        backoff_delay(-1, first=1.0)


@pytest.mark.parametrize("retries", range(8))
def test_equal_jitter_stays_between_half_and_all_of_the_delay(retries: int) -> None:
    rng = random.Random(retries)
    ceiling = min(2.0 * 2**retries, 60.0)
    delays = [backoff_delay(retries, first=2.0, cap=60.0, jitter=Jitter.EQUAL, rng=rng) for _ in range(200)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
    assert len(set(delays)) > 1


@pytest.mark.parametrize("retries", range(1, 6))
def test_full_jitter_stays_between_nothing_and_the_delay(retries: int) -> None:
    rng = random.Random(retries)
    ceiling = 0.01 * 2**retries
    delays = [backoff_delay(retries, first=0.01, jitter=Jitter.FULL, rng=rng) for _ in range(200)]
    assert all(0 <= d <= ceiling for d in delays)
    assert min(delays) < ceiling / 2  # not the equal jitter's floor


def test_a_loop_backs_off_with_each_failure_and_starts_over_after_a_success() -> None:
    backoff = Backoff(first=0.2, cap=5.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    backoff.reset()
    assert backoff.next_delay() == 0.2


def test_a_schedule_gives_its_delays_in_order_then_none() -> None:
    schedule = [10.0, 60.0, 300.0]
    assert [scheduled_delay(step, schedule) for step in range(4)] == [10.0, 60.0, 300.0, None]
    assert scheduled_delay(0, []) is None


def test_an_outage_retries_a_task_1_2_4_8_then_every_10_seconds() -> None:
    assert [outage_retry_countdown(n) for n in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


@override_settings(PAYMENTS_GATEWAY_RETRY_BACKOFF=2.0, PAYMENTS_GATEWAY_RETRY_BACKOFF_MAX=30.0)
@pytest.mark.parametrize(("retries", "ceiling"), [(0, 2.0), (1, 4.0), (3, 16.0), (4, 30.0), (9, 30.0)])
def test_a_gateway_retry_waits_between_half_and_all_of_its_capped_delay(retries: int, ceiling: float) -> None:
    delays = [gateway_retry_countdown(retries) for _ in range(100)]
    assert all(ceiling / 2 <= d <= ceiling for d in delays)
