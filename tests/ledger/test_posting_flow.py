"""Ledger postings requested on Kafka, through the real bridge, Celery worker and PostgreSQL."""

from __future__ import annotations

import uuid
from decimal import Decimal

from audit.models import AuditEvent
from bridge import topics
from bridge.models import InboxEvent, OutboxEvent
from ledger.models import Balance, Entry, Transaction
from ledger.services import INBOX_CONSUMER as LEDGER_INBOX
from tests.conftest import Stack
from tests.ledger.support import (
    FAILED,
    UPDATED,
    failure,
    for_transaction,
    new_id,
    request_posting,
    topup_request,
    transaction_request,
    transfer_request,
    updates,
)
from tests.support.inbox import redelivery_refused
from tests.support.kafka import Collector, Record, subject_is
from tests.support.waiting import wait_until


def user() -> str:
    return f"user:{uuid.uuid4().hex[:10]}"


def balances(account: str) -> dict[str, Decimal]:
    return dict(Balance.objects.filter(account_id=account).values_list("currency", "balance"))


def test_topup_credits_the_user_and_announces_both_balances(live: Stack, collector: Collector) -> None:
    alice = user()
    data = topup_request(alice, "100.00", description="first topup")
    request_posting(live, data)

    changed = updates(collector, data["transactionId"], 2)
    assert changed[alice] == {
        "accountId": alice,
        "currency": "USD",
        "balance": "100.00",
        "transactionId": data["transactionId"],
        "version": 1,
    }
    assert "external:bank" in changed
    record: Record = collector.matching(UPDATED, subject_is(alice))[0]
    assert record.json()["source"] == "/kafka-platform/ledger"
    assert balances(alice) == {"USD": Decimal("100.00")}
    txn = Transaction.objects.get(pk=data["transactionId"])
    assert txn.kind == "topup" and txn.description == "first topup"
    collector.wait_for(topics.AUDIT_LEDGER_EVENTS.name, subject_is(data["transactionId"]))
    assert wait_until(
        lambda: AuditEvent.objects.filter(
            subject_id=data["transactionId"], action="transaction.posted"
        ).exists(),
        timeout_s=30,
    )


def test_transfer_moves_money_between_users(live: Stack, collector: Collector) -> None:
    alice, bob = user(), user()
    seed = topup_request(alice, "100.00")
    request_posting(live, seed)
    updates(collector, seed["transactionId"], 2)
    data = transfer_request(alice, bob, "30.00")
    request_posting(live, data)

    changed = updates(collector, data["transactionId"], 2)
    assert (changed[alice]["balance"], changed[alice]["version"]) == ("70.00", 2)
    assert (changed[bob]["balance"], changed[bob]["version"]) == ("30.00", 1)
    assert balances(alice) == {"USD": Decimal("70")} and balances(bob) == {"USD": Decimal("30")}


def test_overdraft_is_refused_with_insufficient_funds_and_changes_nothing(
    live: Stack, collector: Collector
) -> None:
    alice, bob = user(), user()
    seed = topup_request(alice, "50.00")
    request_posting(live, seed)
    updates(collector, seed["transactionId"], 2)
    data = transfer_request(alice, bob, "50.01")
    request_posting(live, data)

    refused = failure(collector, data["transactionId"])
    assert refused["reason"] == "insufficient_funds" and "50.00" in refused["message"]
    assert not collector.matching(UPDATED, for_transaction(data["transactionId"]))
    assert not Transaction.objects.filter(pk=data["transactionId"]).exists()
    assert balances(alice) == {"USD": Decimal("50")} and balances(bob) == {}


def test_unbalanced_journal_is_refused(live: Stack, collector: Collector) -> None:
    alice = user()
    data = transaction_request(
        "journal",
        currency="USD",
        entries=[
            {"account": "external:bank", "direction": "debit", "amount": "10.00"},
            {"account": alice, "direction": "credit", "amount": "9.99"},
        ],
    )
    request_posting(live, data)
    refused = failure(collector, data["transactionId"])
    assert refused == {
        "transactionId": data["transactionId"],
        "reason": "unbalanced",
        "message": "entries do not balance: USD debits - credits = 0.01",
    }
    assert not Transaction.objects.filter(pk=data["transactionId"]).exists()


def test_unknown_account_prefix_is_refused_as_invalid_account(live: Stack, collector: Collector) -> None:
    data = topup_request("wallet:alice", "10.00")
    request_posting(live, data)
    assert failure(collector, data["transactionId"])["reason"] == "invalid_account"


def test_malformed_money_is_dead_lettered_not_refused(live: Stack, collector: Collector) -> None:
    data = topup_request(user(), "10.001")
    request_posting(live, data)
    [dead] = collector.wait_for(topics.LEDGER_DLQ.name, subject_is(data["transactionId"]))
    assert dead.headers["dlq-reason"] == b"schema_violation"
    assert not collector.matching(FAILED, subject_is(data["transactionId"]))


def test_same_transaction_twice_posts_once(live: Stack, collector: Collector) -> None:
    alice = user()
    data = topup_request(alice, "25.00")
    event_id, repeat_id = new_id("evt"), new_id("evt")
    since = live.worker.log_size()
    request_posting(live, data, event_id=event_id)
    request_posting(live, data, event_id=event_id)  # the same event redelivered
    request_posting(live, data, event_id=repeat_id)  # another event asking for the same transactionId
    updates(collector, data["transactionId"], 2)
    # Proof that every copy was consumed, before asserting that only one had an effect: the inbox
    # refused the redelivery (whichever copy came second), and recorded the other event as handled.
    wait_until(
        redelivery_refused(live.worker, consumer=LEDGER_INBOX, event_id=event_id, since=since),
        what=f"the worker refused the redelivered {event_id}",
    )
    wait_until(
        lambda: InboxEvent.objects.filter(consumer=LEDGER_INBOX, event_id=repeat_id).exists(),
        what=f"the worker handled the repeated request {repeat_id}",
    )

    assert Transaction.objects.filter(pk=data["transactionId"]).count() == 1
    assert Entry.objects.filter(transaction_id=data["transactionId"]).count() == 2
    assert balances(alice) == {"USD": Decimal("25")}
    # What would be published is written with the effect, in its transaction: one update of alice.
    assert OutboxEvent.objects.filter(topic=UPDATED, key=alice).count() == 1
    assert not OutboxEvent.objects.filter(topic=FAILED, key=data["transactionId"]).exists()
    collector.poll()
    assert len(collector.matching(UPDATED, for_transaction(data["transactionId"]))) == 2
    assert not collector.matching(FAILED, subject_is(data["transactionId"]))
    assert not collector.matching(topics.LEDGER_DLQ.name, subject_is(data["transactionId"]))


def test_fx_exchange_is_a_journal_through_the_fx_account_balanced_per_currency(
    live: Stack, collector: Collector
) -> None:
    alice = user()
    seed = topup_request(alice, "100.00")
    request_posting(live, seed)
    updates(collector, seed["transactionId"], 2)
    data = transaction_request(
        "journal",
        description="USD to EUR",
        metadata={"fxRate": "0.92", "fromCurrency": "USD", "toCurrency": "EUR"},
        entries=[
            {"account": alice, "direction": "debit", "amount": "100.00", "currency": "USD"},
            {"account": "external:fx", "direction": "credit", "amount": "100.00", "currency": "USD"},
            {"account": "external:fx", "direction": "debit", "amount": "92.00", "currency": "EUR"},
            {"account": alice, "direction": "credit", "amount": "92.00", "currency": "EUR"},
        ],
    )
    request_posting(live, data)

    records = collector.wait_for(UPDATED, for_transaction(data["transactionId"]), count=4)
    by_leg = {
        (r.json()["data"]["accountId"], r.json()["data"]["currency"]): r.json()["data"] for r in records
    }
    assert by_leg[(alice, "USD")]["balance"] == "0.00" and by_leg[(alice, "EUR")]["balance"] == "92.00"
    assert by_leg[(alice, "EUR")]["version"] == 1 and by_leg[(alice, "USD")]["version"] == 2
    assert balances(alice) == {"USD": Decimal("0"), "EUR": Decimal("92")}
    assert Transaction.objects.get(pk=data["transactionId"]).metadata["fxRate"] == "0.92"

    missing_rate = transaction_request("journal", entries=data["entries"])
    request_posting(live, missing_rate)
    assert failure(collector, missing_rate["transactionId"])["reason"] == "validation_error"
