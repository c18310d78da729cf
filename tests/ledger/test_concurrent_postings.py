"""Many workers posting transfers among the same few accounts at once lose no update.

4000 transfers among 10 accounts go to Kafka at once; the bridge dispatches them to a dedicated
Celery worker with 8 processes (plus the session's worker), so at least 8 postings run against
the same balance rows at any moment. Afterwards every balance is exactly what the transfers add
up to, each currency sums to zero, and every balance's versions run 1..n without a gap.
Marked chaos because it takes minutes on a small machine; `make test` runs it.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter, defaultdict
from decimal import Decimal

import pytest
from django.db.models import Count, Max, Min
from kafka import KafkaProducer

from audit.models import AuditEvent
from bridge import outbox
from ledger.models import Balance, Entry, Transaction
from tests.conftest import Stack
from tests.ledger.support import REQUESTED, post, topup_request, transfer_request
from tests.support.builders import structured
from tests.support.processes import Proc, celery
from tests.support.signing import sign
from tests.support.waiting import wait_until

pytestmark = pytest.mark.chaos

POSTERS = 8
TRANSFERS_PER_POSTER = 500
ACCOUNTS = 10
OPENING = Decimal("10000.00")


@pytest.fixture
def posters(live: Stack) -> Proc:
    worker = Proc(
        "ledger-posters",
        celery(
            "worker",
            "-Q",
            "ledger",
            "-c",
            str(POSTERS),
            "-l",
            "info",
            "--without-mingle",
            "--without-gossip",
            "-n",
            f"posters-{uuid.uuid4().hex[:6]}@%h",
        ),
        # Connections kept across tasks, as the production default does.
        {**live.env, "DATABASE_CONN_MAX_AGE": "60"},
        live.log_dir,
    )
    worker.start()
    worker.wait_for_log("ready.")
    yield worker
    worker.stop()


def test_concurrent_transfers_keep_every_balance_exact_and_versions_gap_free(
    live: Stack, posters: Proc
) -> None:
    run = uuid.uuid4().hex[:6]
    accounts = [f"user:conc-{run}-{i}" for i in range(ACCOUNTS)]
    for account in accounts:
        post(topup_request(account, str(OPENING), transactionId=f"open-{account}"))

    rng = random.Random(4)
    transfers = []
    for n in range(POSTERS * TRANSFERS_PER_POSTER):
        source, target = rng.sample(accounts, 2)
        # Small amounts: no transfer can be refused whatever order they run in, so the outcome is exact.
        amount = Decimal(rng.randint(1, 500)) / 100
        transfers.append(transfer_request(source, target, str(amount), transactionId=f"conc-{run}-{n}"))
    expected = defaultdict(lambda: OPENING)
    touches: Counter[str] = Counter({account: 1 for account in accounts})
    for data in transfers:
        amount = Decimal(data["amount"])
        expected[data["fromAccount"]] -= amount
        expected[data["toAccount"]] += amount
        touches.update([data["fromAccount"], data["toAccount"]])

    producer = KafkaProducer(bootstrap_servers=live.bootstrap, linger_ms=20)
    for data in transfers:
        value = structured(REQUESTED, data)
        producer.send(
            REQUESTED, key=data["transactionId"].encode(), value=value, headers=sign(REQUESTED, value)
        )
    producer.flush(timeout=60)
    producer.close()

    posted = Transaction.objects.filter(transaction_id__startswith=f"conc-{run}-")
    assert wait_until(lambda: posted.count() == len(transfers), timeout_s=600, interval_s=1.0), (
        f"{posted.count()} of {len(transfers)} transfers posted"
    )

    rows = {b.account_id: b for b in Balance.objects.filter(account_id__in=accounts, currency="USD")}
    assert {account: rows[account].balance for account in accounts} == dict(expected)
    assert sum(rows[account].balance for account in accounts) == OPENING * ACCOUNTS
    # Each currency sums to zero: what the platform owes equals what it holds.
    owed = sum(b.balance for b in Balance.objects.filter(currency="USD", account__kind="liability"))
    held = sum(b.balance for b in Balance.objects.filter(currency="USD", account__kind="asset"))
    assert owed == held
    # Versions: one per change, no gap, no repeat, matching the entries that made them.
    for account in accounts:
        assert rows[account].version == touches[account]
        versions = Entry.objects.filter(account_id=account, currency="USD").aggregate(
            n=Count("id"), distinct=Count("version", distinct=True), low=Min("version"), high=Max("version")
        )
        assert versions == {
            "n": touches[account],
            "distinct": touches[account],
            "low": 1,
            "high": touches[account],
        }
    # Every posting's audit record reached the audit log (and the stack is drained for the next test).
    audited = AuditEvent.objects.filter(action="transaction.posted", subject_id__startswith=f"conc-{run}-")
    assert wait_until(lambda: audited.count() == len(transfers), timeout_s=600, interval_s=1.0), (
        f"{audited.count()} of {len(transfers)} postings audited"
    )
    assert wait_until(lambda: outbox.pending_count() == 0, timeout_s=120, interval_s=1.0)
