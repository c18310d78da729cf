"""Crash and outage tests over the whole stack: every request has exactly one effect.

Each test sends CHAOS_N payments (default 2000) for a merchant of its own, breaks something
while they flow, lets the stack recover by itself, then checks that every request had exactly one
effect: one payment captured with its three transitions, one processed event, one ledger posting
(two entries), one email notification sent; the merchant's balance is exactly the sum of the
payments, and the ledger reconciles (every balance matches its entries, each currency sums to
zero). Nothing is missing.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from kafka import KafkaProducer

from bridge import topics
from ledger import services as ledger_services
from ledger.models import Balance, Entry, Transaction
from notifications.models import Notification, NotificationStatus
from payments.models import Payment, PaymentStatus
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.faults import TcpProxy
from tests.support.kafka import Collector
from tests.support.private_redis import PrivateRedis
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1200)]

N = int(os.environ.get("CHAOS_N", "2000"))
AMOUNT = Decimal("99.99")
REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name


@dataclass
class Chaos:
    stack: Stack
    redis: PrivateRedis
    postgres: TcpProxy


@pytest.fixture
def chaos(stack: Stack, shared_db: None, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Chaos]:
    """The stack restarted on a private Redis and behind a PostgreSQL proxy we can cut."""
    redis_server = PrivateRedis(tmp_path / "redis.log", persistent=True).start()
    database = urlsplit(stack.env["DATABASE_URL"])
    proxy = TcpProxy(database.hostname or "127.0.0.1", database.port or 5432).start()
    stack.reconfigure(
        {
            "CELERY_BROKER_URL": redis_server.url,
            "DATABASE_URL": urlunsplit(
                database._replace(netloc=f"{database.username}@127.0.0.1:{proxy.port}")
            ),
            # A killed worker's unacknowledged tasks come back after this many seconds.
            "CELERY_VISIBILITY_TIMEOUT": "15",
        }
    )
    try:
        yield Chaos(stack, redis_server, proxy)
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is None or report.failed:
            print(stack.logs())
        stack.reconfigure({})
        proxy.stop()
        redis_server.stop()


@dataclass
class Run:
    merchant: str
    ids: list[str]


def send(stack: Stack, count: int, *, twice: bool = False) -> Run:
    run = uuid.uuid4().hex[:8]
    ids = [f"chaos-{run}-{i}" for i in range(count)]
    producer = KafkaProducer(bootstrap_servers=stack.bootstrap, linger_ms=5)
    for payment_id in ids:
        request = payment_request(
            paymentId=payment_id,
            merchantId=f"chaos-{run}",
            amount=str(AMOUNT),
            customer={"email": f"{payment_id}@example.com"},
        )
        value = structured(REQUESTED, request)
        for _ in range(2 if twice else 1):
            producer.send(REQUESTED, key=payment_id.encode(), value=value)
    producer.flush()
    producer.close()
    return Run(merchant=f"chaos-{run}", ids=ids)


def ours(ids: list[str]):  # noqa: ANN201
    wanted = {i.encode() for i in ids}
    return lambda r: r.key in wanted


def assert_exactly_once(collector: Collector, run: Run, timeout_s: float = 900) -> None:
    ids = run.ids
    collector.wait_for(PROCESSED, ours(ids), count=len(ids), timeout_s=timeout_s)
    collector.settle(3.0)
    # The outbox relay publishes at least once: a row published just before PostgreSQL went away
    # may be published again, with the same event id, which consumers deduplicate (CONTRACT §4).
    # A second effect would be a second event id.
    events = defaultdict(set)
    for record in collector.matching(PROCESSED, ours(ids)):
        events[record.key].add(record.json()["id"])
    assert len(events) == len(ids), "a payment was never announced"
    twice = [key for key, ids_seen in events.items() if len(ids_seen) > 1]
    assert not twice, f"announced twice, as different events: {twice[:5]}"
    payments = Payment.objects.filter(payment_id__in=ids)
    assert payments.count() == len(ids)
    assert payments.filter(status=PaymentStatus.CAPTURED).count() == len(ids)
    transitions = Counter(payments.values_list("transitions__to_status", flat=True))
    assert transitions == {"requested": len(ids), "processing": len(ids), "captured": len(ids)}

    # One ledger posting each; the merchant's balance is exactly what it was paid.
    postings = Transaction.objects.filter(transaction_id__in=[f"payment:{i}" for i in ids])
    wait_until(lambda: postings.count() == len(ids), timeout_s=timeout_s, what="every ledger posting")
    assert Entry.objects.filter(transaction__in=postings).count() == 2 * len(ids)
    merchant = Balance.objects.get(account_id=f"merchant:{run.merchant}", currency="USD")
    assert merchant.balance == AMOUNT * len(ids)
    assert merchant.version == len(ids), "a posting counted twice or skipped in the balance's versions"
    reconciliation = ledger_services.balances_reconcile()
    assert reconciliation.ok, (reconciliation.mismatches, reconciliation.imbalances)

    # One email notification each, sent.
    notifications = Notification.objects.filter(
        notification_id__in=[f"payment:{i}:captured:email" for i in ids]
    )
    wait_until(
        lambda: notifications.filter(status=NotificationStatus.SENT).count() == len(ids),
        timeout_s=timeout_s,
        what="every notification sent",
    )
    assert notifications.count() == len(ids)


def test_worker_killed_mid_stream(chaos: Chaos, collector: Collector) -> None:
    run = send(chaos.stack, N)
    collector.wait_for(PROCESSED, ours(run.ids), count=N // 5, timeout_s=300)
    chaos.stack.worker.kill()
    chaos.stack.worker.start()
    assert_exactly_once(collector, run)


def test_bridge_killed_mid_stream(chaos: Chaos, collector: Collector) -> None:
    run = send(chaos.stack, N)
    collector.wait_for(PROCESSED, ours(run.ids), count=N // 5, timeout_s=300)
    chaos.stack.bridge.kill()
    chaos.stack.bridge.start()
    assert_exactly_once(collector, run)


def test_redis_restarted_while_events_flow(chaos: Chaos, collector: Collector) -> None:
    run = send(chaos.stack, N)
    collector.wait_for(PROCESSED, ours(run.ids), count=N // 5, timeout_s=300)
    chaos.redis.stop()
    time.sleep(3)
    chaos.redis.start()
    assert_exactly_once(collector, run)
    assert chaos.stack.processes_alive(), "a process died instead of reconnecting"


def test_postgres_refusing_connections_for_a_few_seconds(chaos: Chaos, collector: Collector) -> None:
    run = send(chaos.stack, N)
    collector.wait_for(PROCESSED, ours(run.ids), count=N // 5, timeout_s=300)
    chaos.postgres.cut()
    time.sleep(5)
    chaos.postgres.restore()
    assert_exactly_once(collector, run)
    assert chaos.stack.processes_alive(), "a process died instead of reconnecting"


def test_every_event_delivered_twice(chaos: Chaos, collector: Collector) -> None:
    run = send(chaos.stack, N, twice=True)
    assert_exactly_once(collector, run)


def test_bridge_sigterm_is_graceful(chaos: Chaos) -> None:
    assert chaos.stack.bridge.stop(signal.SIGTERM) == 0
    chaos.stack.bridge.start()
