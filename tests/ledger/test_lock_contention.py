"""Lost lock races are retried: a deadlock and a concurrent duplicate each end in one clean posting."""

from __future__ import annotations

from decimal import Decimal

import psycopg
import pytest

from ledger.models import Transaction
from tests.ledger.support import balance, post, topup_request, transfer_request
from tests.support.locks import Background, waiting_on_locks

pytestmark = pytest.mark.django_db(transaction=True)


def lock_balance(conn: psycopg.Connection, account: str) -> None:
    conn.execute("SELECT 1 FROM ledger_balance WHERE account_id = %s FOR UPDATE", [account])


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
