"""A batch of posting requests in one database transaction: the same postings, refusals and
duplicates as one request at a time, straight through the batch handler (no Kafka)."""

from __future__ import annotations

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
