"""Races made on purpose: a second database session that holds locks behind the code's back
(the `outsider` fixture, tests/conftest.py), and code run in a thread of its own meanwhile."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from django.db import connection, connections


def outsider_session() -> Iterator[psycopg.Connection]:
    """A second database session, in a transaction of its own, closed at the end."""
    db = connection.settings_dict
    conn = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=False
    )
    yield conn
    conn.close()


class Background(threading.Thread):
    """Runs `fn` with its own Django connection and keeps its result or exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            self.error = exc
        finally:
            connections.close_all()


def waiting_on_locks(conn: psycopg.Connection, count: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(conn.info.dsn, autocommit=True) as probe:
        while time.monotonic() < deadline:
            waiting = probe.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            if waiting and waiting[0] >= count:
                return
            time.sleep(0.05)
    raise TimeoutError(f"fewer than {count} sessions waiting on locks")
