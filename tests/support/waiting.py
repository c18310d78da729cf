"""Polling for a condition the platform reaches asynchronously."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    probe: Callable[[], T], *, timeout_s: float = 60.0, interval_s: float = 0.1, what: str = ""
) -> T:
    """The first truthy value `probe` returns; TimeoutError when none came in `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not reached after {timeout_s}s: {what or probe}")
        time.sleep(interval_s)
