"""Builders and helpers for ledger tests: requests as clients send them, postings straight to the service."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bridge import topics
from ledger import services
from ledger.events import TransactionRequested
from ledger.models import Balance
from ledger.postings import Posting, from_request
from ledger.services import PostResult
from tests.conftest import Stack
from tests.support.builders import structured
from tests.support.kafka import Collector, Record, produce, subject_is
from tests.support.signing import sign

REQUESTED = topics.LEDGER_TRANSACTION_REQUESTED.name
UPDATED = topics.LEDGER_BALANCE_UPDATED.name
FAILED = topics.LEDGER_TRANSACTION_FAILED.name


def new_id(prefix: str = "txn") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def transaction_request(kind: str, **fields: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"transactionId": fields.pop("transactionId", new_id(kind)), "kind": kind}
    data.update(fields)
    return data


def topup_request(account: str, amount: str, currency: str = "USD", **fields: Any) -> dict[str, Any]:
    return transaction_request("topup", toAccount=account, amount=amount, currency=currency, **fields)


def transfer_request(
    source: str, target: str, amount: str, currency: str = "USD", **fields: Any
) -> dict[str, Any]:
    return transaction_request(
        "transfer", fromAccount=source, toAccount=target, amount=amount, currency=currency, **fields
    )


def posting(data: dict[str, Any]) -> Posting:
    return from_request(TransactionRequested.model_validate(data))


def post(data: dict[str, Any], actor: str = "test") -> PostResult:
    """Post a request straight through the service (no Kafka), as the worker would."""
    return services.transaction_post(posting=posting(data), actor=actor)


def balance(account: str, currency: str = "USD") -> Decimal:
    row = Balance.objects.filter(account_id=account, currency=currency).first()
    return row.balance if row is not None else Decimal(0)


def request_posting(stack: Stack, data: dict[str, Any], *, event_id: str | None = None) -> None:
    """As payments or the API ask the ledger: signed by the platform (the topic is gated)."""
    value = structured(REQUESTED, data, event_id=event_id)
    produce(stack.bootstrap, REQUESTED, value, key=data["transactionId"], headers=sign(REQUESTED, value))


def for_transaction(transaction_id: str) -> Callable[[Record], bool]:
    return lambda r: r.json()["data"].get("transactionId") == transaction_id


def updates(collector: Collector, transaction_id: str, count: int) -> dict[str, dict[str, Any]]:
    """The balance-updated data of a transaction, by account id."""
    records = collector.wait_for(UPDATED, for_transaction(transaction_id), count=count)
    return {r.json()["data"]["accountId"]: r.json()["data"] for r in records}


def failure(collector: Collector, transaction_id: str) -> dict[str, Any]:
    [record] = collector.wait_for(FAILED, subject_is(transaction_id))
    return record.json()["data"]
