"""Sending chaos payments and checking that each had exactly one effect, with a record of the
outcome per scenario for the `make chaos` table (tests/chaos/report.py)."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from django.utils import timezone
from kafka import KafkaProducer

from audit.models import AuditEvent
from audit.selectors import verify_chain
from bridge import topics
from ledger import services as ledger_services
from ledger.models import Balance, Entry, Transaction
from notifications.models import Notification, NotificationStatus
from payments.models import Payment, PaymentStatus
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, Record

AMOUNT = Decimal("99.99")
REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
PAYMENT_STATUSES = ("requested", "processing", "captured")
# The payment's audit trail: one record per transition (payments.services.transitions._audit).
PAYMENT_AUDIT_ACTIONS = tuple(f"payment.{status}" for status in PAYMENT_STATUSES)


def chaos_n(default: int = 400) -> int:
    """CHAOS_N when set (`make chaos` sets 10000), else this scenario's default for `make test`.

    At `make test` size a scenario proves its mechanism: the fault hits payments in flight (each
    scenario asserts that some were, or it tested nothing) and every one has exactly one effect.
    Hunting the rarer windows of a fault takes volume: that is the soak's (`make chaos`)."""
    return int(os.environ.get("CHAOS_N") or default)


def chaos_timeout_s(n: int, *, outage_s: float = 0) -> float:
    """A test's time limit: 20 minutes covers 2,000 payments on a shared 2-core machine; a soak of
    10,000 needs more, and the outage itself adds to it."""
    return max(1200.0, n * 0.4) + outage_s


# No effect added for this long (longer than any outage and the first retry steps after it): the
# scenario has failed, and its row in the `make chaos` table says what it lost. Waiting on to the
# test's time limit would end it without a row.
STALLED_AFTER_S = 600.0


@dataclass
class Run:
    merchant: str
    ids: list[str]
    started: float = field(default_factory=time.monotonic)
    since: datetime = field(default_factory=timezone.now)  # before its first request was sent


def send(stack: Stack, count: int, *, twice: bool = False, more_for: Run | None = None) -> Run:
    """`count` payment requests for a new merchant, or `more_for` an earlier run's merchant (the
    returned run then holds both: requests that arrived before and during an outage)."""
    run = more_for.merchant.removeprefix("chaos-") if more_for else uuid.uuid4().hex[:8]
    first = len(more_for.ids) if more_for else 0
    ids = [f"chaos-{run}-{i}" for i in range(first, first + count)]
    started, since = time.monotonic(), timezone.now()
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
    if more_for:
        return Run(
            merchant=more_for.merchant,
            ids=[*more_for.ids, *ids],
            started=more_for.started,
            since=more_for.since,
        )
    return Run(merchant=f"chaos-{run}", ids=ids, started=started, since=since)


def ours(ids: list[str]) -> Callable[[Record], bool]:
    wanted = {i.encode() for i in ids}
    return lambda r: r.key in wanted


def captured_count(run: Run) -> int:
    return Payment.objects.filter(payment_id__in=run.ids, status=PaymentStatus.CAPTURED).count()


def posted_count(run: Run) -> int:
    """Payments whose ledger posting is done: the end of the pipeline's second Kafka hop."""
    return Transaction.objects.filter(transaction_id__in=[f"payment:{i}" for i in run.ids]).count()


@dataclass
class Effects:
    """What the platform did for a run's payments, per payment id."""

    announced: dict[str, set[str]]  # payment id -> ids of its payment-processed events
    captured: set[str]
    transitions: Counter[tuple[str, str]]  # (payment id, status) -> times entered
    posted: set[str]
    entries: int
    notified: set[str]
    notifications: int
    audited: Counter[tuple[str, str]]  # (payment id, action) -> audit records

    def complete(self, ids: list[str]) -> set[str]:
        """Ids with every effect present (at least once)."""
        return {
            i
            for i in ids
            if i in self.announced
            and i in self.captured
            and i in self.posted
            and i in self.notified
            and all(self.transitions[(i, s)] for s in PAYMENT_STATUSES)
            and all(self.audited[(i, a)] for a in PAYMENT_AUDIT_ACTIONS)
        }

    def progress(self, ids: list[str]) -> tuple[int, ...]:
        """How far the run has come; unchanged for STALLED_AFTER_S, it has come as far as it will."""
        return (
            len(self.complete(ids)),
            len(self.announced),
            len(self.captured),
            len(self.posted),
            len(self.notified),
            sum(self.audited.values()),
        )

    def doubled(self) -> set[str]:
        """Ids with an effect more than once. A second processed event with the same event id is
        the outbox relay publishing at least once (consumers deduplicate it by event id); a second
        effect is a second event id, transition or audit record."""
        twice = {i for i, events in self.announced.items() if len(events) > 1}
        twice |= {i for (i, _), n in self.transitions.items() if n > 1}
        twice |= {i for (i, _), n in self.audited.items() if n > 1}
        return twice


def effects(collector: Collector, ids: list[str]) -> Effects:
    announced: dict[str, set[str]] = defaultdict(set)
    for record in collector.matching(PROCESSED, ours(ids)):
        announced[(record.key or b"").decode()].add(record.json()["id"])
    payments = Payment.objects.filter(payment_id__in=ids)
    postings = Transaction.objects.filter(transaction_id__in=[f"payment:{i}" for i in ids])
    notifications = Notification.objects.filter(
        notification_id__in=[f"payment:{i}:captured:email" for i in ids]
    )
    return Effects(
        announced=dict(announced),
        captured=set(payments.filter(status=PaymentStatus.CAPTURED).values_list("payment_id", flat=True)),
        transitions=Counter(payments.values_list("payment_id", "transitions__to_status")),
        posted={t.removeprefix("payment:") for t in postings.values_list("transaction_id", flat=True)},
        entries=Entry.objects.filter(transaction__in=postings).count(),
        notified={
            n.removeprefix("payment:").removesuffix(":captured:email")
            for n in notifications.filter(status=NotificationStatus.SENT).values_list(
                "notification_id", flat=True
            )
        },
        notifications=notifications.count(),
        audited=Counter(
            AuditEvent.objects.filter(subject_id__in=ids, action__in=PAYMENT_AUDIT_ACTIONS).values_list(
                "subject_id", "action"
            )
        ),
    )


def assert_exactly_once(
    stack: Stack, collector: Collector, run: Run, timeout_s: float | None = None, *, notes: str = ""
) -> None:
    """Every payment of `run` has exactly one effect of each kind, the merchant's balance is exact,
    the ledger reconciles and the audit chain is intact. The outcome is first recorded for the
    `make chaos` table, so a failed scenario shows there with what it lost or doubled.

    Counted once every payment has each effect and the stack has consumed every copy of every
    event (`Stack.wait_until_drained`): a duplicate a crash left on its way is counted, not missed."""
    ids = run.ids
    deadline = time.monotonic() + (timeout_s or max(900.0, len(ids) * 0.3))
    seen = effects(collector, ids)
    progress, progressed_at = seen.progress(ids), time.monotonic()
    while len(seen.complete(ids)) < len(ids) and time.monotonic() < deadline:
        collector.settle(1.0)  # reads the processed events meanwhile
        seen = effects(collector, ids)
        if seen.progress(ids) != progress:
            progress, progressed_at = seen.progress(ids), time.monotonic()
        elif time.monotonic() - progressed_at > STALLED_AFTER_S:
            break  # what is missing now stays missing: record it rather than wait for the time limit
    seconds = time.monotonic() - run.started
    try:
        # Every redelivered copy consumed, then count. As long as a stall may last: after the
        # broker's 30 s pause the relay took over two minutes to publish its last rows.
        drained_s = stack.wait_until_drained(run.since, collector, timeout_s=STALLED_AFTER_S)
        undrained = ""
    except TimeoutError as exc:
        drained_s, undrained = STALLED_AFTER_S, str(exc)  # the counts then prove nothing either way
    seen = effects(collector, ids)
    merchant = Balance.objects.filter(account_id=f"merchant:{run.merchant}", currency="USD").first()
    balance = merchant.balance if merchant else Decimal(0)
    lost = set(ids) - seen.complete(ids)
    doubled = seen.doubled()
    record_result(
        payments=len(ids),
        lost=len(lost),
        doubled=len(doubled),
        balance_drift=balance - AMOUNT * len(ids),
        seconds=seconds,
        notes="; ".join(n for n in (notes, f"drained {drained_s:.0f}s after complete", undrained) if n),
    )

    assert not undrained, undrained

    assert len(seen.announced) == len(ids), f"never announced: {sorted(set(ids) - set(seen.announced))[:5]}"
    assert not doubled, f"an effect twice: {sorted(doubled)[:5]}"
    assert not lost, f"{len(lost)} payments without every effect, e.g. {sorted(lost)[:5]}"
    assert Counter(status for (_, status), n in seen.transitions.items() for _ in range(n)) == {
        status: len(ids) for status in PAYMENT_STATUSES
    }

    # One ledger posting each; the merchant's balance is exactly what it was paid.
    assert len(seen.posted) == len(ids)
    assert seen.entries == 2 * len(ids)
    assert merchant is not None
    assert merchant.balance == AMOUNT * len(ids)
    assert merchant.version == len(ids), "a posting counted twice or skipped in the balance's versions"
    reconciliation = ledger_services.balances_reconcile()
    assert reconciliation.ok, (reconciliation.mismatches, reconciliation.imbalances)

    # One email notification each, sent.
    assert seen.notifications == len(ids)
    assert len(seen.notified) == len(ids)

    # One audit record per transition each, and the chain they were appended to is intact.
    assert sum(seen.audited.values()) == len(PAYMENT_AUDIT_ACTIONS) * len(ids)
    chain = verify_chain()
    assert chain.intact, chain.broken


def record_result(
    *, payments: int, lost: int, doubled: int, balance_drift: Decimal, seconds: float, notes: str = ""
) -> None:
    """Append this scenario's outcome to CHAOS_RESULTS (JSON lines), when set (`make chaos`)."""
    path = os.environ.get("CHAOS_RESULTS")
    if not path:
        return
    # pytest names the running test here ("tests/chaos/test_x.py::test_name (call)").
    current = os.environ.get("PYTEST_CURRENT_TEST", "unknown")
    scenario = current.split("::")[-1].split(" ")[0].removeprefix("test_")
    line = ScenarioResult(scenario, payments, lost, doubled, str(balance_drift), round(seconds, 1), notes)
    with Path(path).open("a") as results:
        results.write(json.dumps(asdict(line)) + "\n")


@dataclass
class ScenarioResult:
    scenario: str
    payments: int
    lost: int
    doubled: int
    balance_drift: str
    seconds: float
    notes: str = ""
