"""EventTask meeting a database or Redis outage: a Celery retry, not a sleep in the worker, without
spending the task's own retries; a wait in the worker only while the broker itself is away.

Without a broker: the task runs under a worker-like request and the retry's publish is captured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from celery.canvas import Signature
from celery.exceptions import Retry
from django.db import OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError

from bridge import tasks as bridge_tasks
from bridge.tasks import OUTAGE_RETRIES_HEADER, OUTAGE_SINCE_HEADER, TRANSIENT_RETRY_FOR_S, EventTask
from kafka_platform.celery import app

# Outcomes of the body's runs, in order: an exception to raise, or a value to return.
outcomes: list[object] = []
runs: list[dict[str, Any]] = []


@app.task(name="tests.bridge.outage_probe", base=EventTask, bind=True, traced=False)
def outage_probe(self: EventTask, payload: dict[str, Any]) -> object:
    runs.append(payload)
    outcome = outcomes.pop(0)
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Signature]]:
    sent: list[Signature] = []
    monkeypatch.setattr(Signature, "apply_async", lambda sig, *a, **kw: sent.append(sig))
    outcomes.clear()
    runs.clear()
    yield sent
    assert not outcomes, "the test expected more runs than happened"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(bridge_tasks.time, "time", fake.time)
    monkeypatch.setattr(bridge_tasks.time, "sleep", fake.sleep)
    return fake


def run_in_worker(*, retries: int = 0, headers: dict[str, str] | None = None) -> object:
    """Run the task as a worker would run a delivered message (not called directly, not eager)."""
    payload = {"type": "test.outage", "id": "e-1"}
    outage_probe.push_request(
        id="task-1",
        args=[payload],
        kwargs={},
        retries=retries,
        called_directly=False,
        is_eager=False,
        delivery_info={"exchange": "", "routing_key": "payments"},
        **(headers or {}),
    )
    try:
        return outage_probe(payload)
    finally:
        outage_probe.pop_request()


def test_a_database_outage_is_a_celery_retry_that_keeps_the_task_s_own_retry_count(
    published: list[Signature], clock: Clock
) -> None:
    outcomes.append(OperationalError("the database is away"))
    with pytest.raises(Retry):
        run_in_worker(retries=2)
    [retry] = published
    assert clock.slept == []  # the worker is free at once
    # The gateway's give-up budget counts request.retries: an outage leaves it where it was.
    assert retry.options["retries"] == 2
    assert retry.options["countdown"] == 1.0
    assert retry.options["queue"] == "payments"
    assert retry.options["headers"] == {OUTAGE_SINCE_HEADER: repr(clock.now), OUTAGE_RETRIES_HEADER: "1"}


def test_later_outage_retries_back_off_and_carry_when_the_outage_began(
    published: list[Signature], clock: Clock
) -> None:
    began = clock.now - 30
    outcomes.append(OperationalError("still away"))
    with pytest.raises(Retry):
        run_in_worker(headers={OUTAGE_SINCE_HEADER: repr(began), OUTAGE_RETRIES_HEADER: "3"})
    [retry] = published
    assert retry.options["countdown"] == 8.0
    assert retry.options["headers"] == {OUTAGE_SINCE_HEADER: repr(began), OUTAGE_RETRIES_HEADER: "4"}
    assert retry.options["countdown"] < 600  # the broker's visibility timeout


def test_an_outage_longer_than_the_budget_fails_the_task(published: list[Signature], clock: Clock) -> None:
    outcomes.append(OperationalError("gone for good"))
    began = clock.now - TRANSIENT_RETRY_FOR_S - 1
    with pytest.raises(OperationalError):
        run_in_worker(headers={OUTAGE_SINCE_HEADER: repr(began), OUTAGE_RETRIES_HEADER: "20"})
    assert published == []


def test_with_the_broker_away_the_task_waits_in_the_worker_and_runs_again(
    monkeypatch: pytest.MonkeyPatch, clock: Clock
) -> None:
    outcomes[:] = [KombuOperationalError("redis away"), KombuOperationalError("redis away"), "done"]
    runs.clear()

    def broker_down(sig: Signature, *args: object, **kwargs: object) -> None:
        raise KombuOperationalError("cannot publish")

    monkeypatch.setattr(Signature, "apply_async", broker_down)
    assert run_in_worker() == "done"
    assert len(runs) == 3 and clock.slept == [0.2, 0.4]


def test_a_task_called_directly_leaves_the_retry_to_its_caller(published: list[Signature]) -> None:
    outcomes.append(OperationalError("away"))
    with pytest.raises(OperationalError):
        outage_probe({"type": "test.outage", "id": "e-2"})
    assert published == []
