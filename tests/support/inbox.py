"""Proof that the worker consumed a redelivered event and its inbox refused it."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.processes import Proc


def refusal_line(consumer: str, event_id: str) -> str:
    """What bridge.inbox logs when `consumer` refuses a copy of `event_id` it already handled."""
    return f"inbox {consumer}: event {event_id} already handled, redelivery refused"


def redelivery_refused(worker: Proc, *, consumer: str, event_id: str, since: int) -> Callable[[], bool]:
    """A `wait_until` probe: has `worker` logged, past byte offset `since`, the refusal of a copy
    of `event_id` by `consumer`? Take `since` (worker.log_size()) before producing the copy, so a
    refusal logged earlier does not count."""
    needle = refusal_line(consumer, event_id).encode()

    def probe() -> bool:
        with open(worker.log_path, "rb") as log:
            log.seek(since)
            return needle in log.read()

    return probe
