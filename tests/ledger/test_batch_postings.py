"""A batch of posting requests in one database transaction: the same postings, refusals and
duplicates as one request at a time, straight through the batch handler (no Kafka)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest

from bridge.codec import Envelope
from bridge.models import OutboxEvent
from ledger import tasks
from ledger.models import Transaction
from tests.ledger.support import REQUESTED, balance, new_id, topup_request, transfer_request


def envelope(data: dict[str, Any], event_id: str | None = None) -> Envelope:
    return Envelope(
        id=event_id or str(uuid.uuid4()), type=REQUESTED, source="/t", time="2026-11-23T00:00:00Z", data=data
    )


@pytest.mark.django_db
def test_a_batch_posts_refuses_and_skips_duplicates_like_single_events() -> None:
    alice, bob = new_id("user:alice"), new_id("user:bob")
    topup = envelope(topup_request(alice, "100.00"))
    transfer = envelope(transfer_request(alice, bob, "30.00"))
    overdraft = envelope(transfer_request(bob, alice, "50.00"))  # bob holds 30: refused
    results = tasks.post_transactions_requested([topup, transfer, topup, overdraft, transfer])
    assert results == ["posted", "posted", "duplicate", "insufficient_funds", "duplicate"]
    assert (balance(alice), balance(bob)) == (Decimal("70.00"), Decimal("30.00"))
    assert not Transaction.objects.filter(pk=overdraft.data["transactionId"]).exists()
    refused = OutboxEvent.objects.filter(
        topic="ledger.transaction-failed", key=overdraft.data["transactionId"]
    )
    assert refused.count() == 1
    # Delivered again, the whole batch has no further effect.
    again = tasks.post_transactions_requested([topup, transfer, overdraft])
    assert again == ["duplicate", "duplicate", "duplicate"]
    assert (balance(alice), balance(bob)) == (Decimal("70.00"), Decimal("30.00"))
    assert refused.count() == 1


@pytest.mark.django_db
def test_a_batch_moves_each_balance_in_order_and_its_statements_do_not_grow_with_it() -> None:
    """Set-based: the batch's balance-updated events carry each step of the running balance and
    version, and ten times the postings cost the same number of statements."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def batch_of(n: int, account: str) -> tuple[list[str], int]:
        events = [envelope(topup_request(account, "10.00")) for _ in range(n)]
        with CaptureQueriesContext(connection) as queries:
            results = tasks.post_transactions_requested(events)
        return results, len(queries.captured_queries)

    small, small_queries = batch_of(2, new_id("user:small"))
    account = new_id("user:large")
    large, large_queries = batch_of(20, account)

    assert small == ["posted"] * 2 and large == ["posted"] * 20
    assert large_queries == small_queries
    updates = [
        e.value
        for e in OutboxEvent.objects.filter(topic="ledger.balance-updated", key=account).order_by("id")
    ]
    steps = [(json.loads(v)["data"]["balance"], json.loads(v)["data"]["version"]) for v in updates]
    assert steps == [(f"{10 * k}.00", k) for k in range(1, 21)]
    assert balance(account) == Decimal("200.00")


@pytest.mark.django_db
def test_a_frozen_account_refuses_only_its_own_postings_in_a_batch() -> None:
    from ledger.models import Account

    frozen, open_ = new_id("user:frozen"), new_id("user:open")
    Account.objects.create(id=frozen, kind="liability", frozen=True)
    events = [envelope(topup_request(open_, "5.00")), envelope(topup_request(frozen, "5.00"))]
    events.append(envelope(topup_request(open_, "5.00")))

    assert tasks.post_transactions_requested(events) == ["posted", "invalid_account", "posted"]
    assert balance(open_) == Decimal("10.00") and balance(frozen) == Decimal(0)
    refused = OutboxEvent.objects.filter(
        topic="ledger.transaction-failed", key=events[1].data["transactionId"]
    )
    assert refused.count() == 1


@pytest.mark.django_db
def test_a_refused_posting_in_a_batch_leaves_no_new_account_behind() -> None:
    from ledger.models import Account

    funded, broke, stranger = new_id("user:funded"), new_id("user:broke"), new_id("user:stranger")
    events = [
        envelope(topup_request(funded, "5.00")),
        envelope(transfer_request(broke, stranger, "1.00")),  # broke holds nothing: refused
    ]

    assert tasks.post_transactions_requested(events) == ["posted", "insufficient_funds"]
    assert Account.objects.filter(pk=funded).exists()
    assert not Account.objects.filter(pk__in=[broke, stranger]).exists()
