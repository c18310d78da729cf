"""Lost lock races are retried: a deadlock and a concurrent duplicate each end in one clean posting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from django.db import connection, connections

from ledger.models import Transaction
from tests.ledger.support import balance, post, topup_request, transfer_request

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def outsider() -> Iterator[psycopg.Connection]:
    """A second database session that takes row locks behind the ledger code's back."""
    db = connection.settings_dict
    conn = psycopg.connect(
        host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=False
    )
    yield conn
    conn.close()


def lock_balance(conn: psycopg.Connection, account: str) -> None:
    conn.execute("SELECT 1 FROM ledger_balance WHERE account_id = %s FOR UPDATE", [account])


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


@pytest.fixture
def funded() -> None:
    post(topup_request("user:a", "100.00", transactionId="fund-a"))
    post(topup_request("user:b", "100.00", transactionId="fund-b"))


def test_posting_that_loses_a_deadlock_is_retried_and_posts_once(
    funded: None, outsider: psycopg.Connection
) -> None:
    # The outsider holds user:b and will want user:a; the posting takes user:a first (lock order),
    # then waits for user:b: a cycle. The outsider waits longest before checking for deadlocks, so
    # PostgreSQL aborts the posting, which must run again rather than fail.
    outsider.execute("SET deadlock_timeout = '10s'")
    lock_balance(outsider, "user:b")
    poster = Background(
        lambda: post(transfer_request("user:a", "user:b", "30.00", transactionId="t-deadlock"))
    )
    poster.start()
    waiting_on_locks(outsider, 1)
    lock_balance(outsider, "user:a")  # blocks until PostgreSQL breaks the cycle by aborting the posting
    outsider.commit()
    poster.join(timeout=30)
    assert poster.error is None, poster.error
    assert poster.result.created
    assert balance("user:a") == Decimal("70.00") and balance("user:b") == Decimal("130.00")


def test_concurrent_duplicates_of_one_transaction_id_post_once(
    funded: None, outsider: psycopg.Connection
) -> None:
    # Both postings pass the "already posted?" check, then queue on the outsider's lock; the one that
    # goes second hits the transactionId's unique key and must answer "duplicate", not fail.
    lock_balance(outsider, "user:a")
    request = transfer_request("user:a", "user:b", "10.00", transactionId="t-race")
    posters = [Background(lambda: post(request)) for _ in range(2)]
    for poster in posters:
        poster.start()
    waiting_on_locks(outsider, 2)
    outsider.commit()
    for poster in posters:
        poster.join(timeout=30)
    assert [p.error for p in posters] == [None, None]
    assert sorted(p.result.created for p in posters) == [False, True]
    assert Transaction.objects.filter(pk="t-race").count() == 1
    assert balance("user:a") == Decimal("90.00") and balance("user:b") == Decimal("110.00")
