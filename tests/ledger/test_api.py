"""The ledger's HTTP API: balances, statements, transactions, and posting requests over Kafka."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone
from rest_framework.test import APIClient

from bridge import topics
from bridge.codec import loads
from bridge.models import OutboxEvent
from core.roles import OPERATORS
from ledger.models import Transaction
from tests.conftest import Stack
from tests.ledger.support import post, topup_request, transaction_request, transfer_request, updates
from tests.support.kafka import Collector

# Tests here reset the books between them (reconciliation corrupts rows on purpose).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client() -> APIClient:
    """An operator: reads every account and may request postings of any kind."""
    user = get_user_model().objects.create_user("ledger-operator")
    user.groups.add(Group.objects.get(name=OPERATORS))
    api = APIClient()
    api.force_authenticate(user)
    return api


@pytest.fixture
def books() -> None:
    post(topup_request("user:alice", "100.00", transactionId="api-1"))
    post(transfer_request("user:alice", "user:bob", "30.00", transactionId="api-2"))
    post(topup_request("user:alice", "1500", currency="JPY", transactionId="api-3"))


def test_balances_have_the_documented_shape(client: APIClient, books: None) -> None:
    answer = client.get("/api/v1/ledger/balances/user:alice/")
    assert answer.status_code == 200
    assert answer.json() == {"accountId": "user:alice", "balances": {"JPY": "1500", "USD": "70.00"}}
    assert client.get("/api/v1/ledger/balances/user:nobody/").status_code == 404


def test_anonymous_clients_are_refused(books: None) -> None:
    assert APIClient().get("/api/v1/ledger/balances/user:alice/").status_code in (401, 403)


def test_statement_lists_entries_with_running_balance_paginated(client: APIClient, books: None) -> None:
    for n in range(55):
        post(transfer_request("user:bob", "user:alice", "0.50", transactionId=f"api-back-{n}"))
    first = client.get("/api/v1/ledger/accounts/user:bob/entries/", {"currency": "USD"}).json()
    assert first["count"] == 56 and len(first["results"]) == 50 and first["next"]
    opening = first["results"][0]
    assert opening == {
        "transactionId": "api-2",
        "kind": "transfer",
        "description": "",
        "postedAt": opening["postedAt"],
        "currency": "USD",
        "direction": "credit",
        "amount": "30.00",
        "balance": "30.00",
        "version": 1,
    }
    assert [e["balance"] for e in first["results"][1:3]] == ["29.50", "29.00"]
    last_page = client.get(first["next"]).json()
    assert last_page["results"][-1]["balance"] == "2.50" and last_page["results"][-1]["version"] == 56
    assert client.get("/api/v1/ledger/accounts/user:nobody/entries/").status_code == 404
    assert client.get("/api/v1/ledger/accounts/user:bob/entries/", {"since": "yesterday"}).status_code == 400


def test_transactions_filter_by_kind_account_currency_and_time(
    client: APIClient, books: None, django_assert_max_num_queries
) -> None:
    def ids(**params: str) -> list[str]:
        return [
            t["transactionId"] for t in client.get("/api/v1/ledger/transactions/", params).json()["results"]
        ]

    # Filtered to this test's accounts: a payment from an earlier test may still be posting.
    with django_assert_max_num_queries(5):  # user, count, page, entries: no query per transaction
        listed = client.get("/api/v1/ledger/transactions/", {"account": "user:alice"}).json()
    assert listed["count"] == 3
    transfer = next(t for t in listed["results"] if t["transactionId"] == "api-2")
    assert transfer["entries"] == [
        {"account": "user:alice", "direction": "debit", "amount": "30.00", "currency": "USD"},
        {"account": "user:bob", "direction": "credit", "amount": "30.00", "currency": "USD"},
    ]
    assert ids(kind="transfer", account="user:alice") == ["api-2"]
    assert sorted(ids(account="user:alice")) == ["api-1", "api-2", "api-3"]
    assert ids(account="user:bob") == ["api-2"]
    assert ids(account="user:bob", currency="JPY") == []
    assert ids(account="user:alice", currency="JPY") == ["api-3"]
    future = (timezone.now() + timedelta(hours=1)).isoformat()
    assert ids(account="user:alice", since=future) == [] and len(ids(account="user:alice", until=future)) == 3
    assert client.get("/api/v1/ledger/transactions/", {"kind": "loan"}).status_code == 400
    detail = client.get("/api/v1/ledger/transactions/api-3/").json()
    assert detail["kind"] == "topup" and detail["entries"][1]["amount"] == "1500"


def post_transaction(client: APIClient, body: dict, key: str | None = "k-1"):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return client.post(
        "/api/v1/ledger/transactions/", data=json.dumps(body), content_type="application/json", **headers
    )


def requested_events() -> list[dict]:
    return [
        loads(bytes(e.value))
        for e in OutboxEvent.objects.filter(topic=topics.LEDGER_TRANSACTION_REQUESTED.name)
    ]


def test_post_needs_an_idempotency_key_and_publishes_once(client: APIClient) -> None:
    body = {
        "transactionId": "api-post-1",
        "kind": "topup",
        "toAccount": "user:carol",
        "amount": 12.5,
        "currency": "USD",
    }
    assert post_transaction(client, body, key=None).status_code == 400

    first = post_transaction(client, body)
    assert first.status_code == 202
    assert first.json() == {"transactionId": "api-post-1", "status": "requested"}
    assert first["Location"] == "/api/v1/ledger/transactions/api-post-1/"
    again = post_transaction(client, body)
    assert again.status_code == 202 and again["Idempotent-Replayed"] == "true"
    assert post_transaction(client, {**body, "amount": "13"}).status_code == 422

    [event] = requested_events()
    assert event["type"] == "ledger.transaction-requested" and event["subject"] == "api-post-1"
    # The JSON number 12.5 was read as a decimal, and goes out as the currency's string.
    assert event["data"] == {
        "transactionId": "api-post-1",
        "kind": "topup",
        "toAccount": "user:carol",
        "amount": "12.50",
        "currency": "USD",
        "description": "",
        "metadata": {},
    }


def test_post_refuses_what_can_never_post(client: APIClient) -> None:
    unbalanced = transaction_request(
        "journal",
        currency="USD",
        entries=[
            {"account": "external:bank", "direction": "debit", "amount": "10"},
            {"account": "user:a", "direction": "credit", "amount": "1"},
        ],
    )
    answer = post_transaction(client, unbalanced, key="k-unbalanced")
    assert answer.status_code == 400 and answer.json()["reason"] == "unbalanced"
    answer = post_transaction(client, topup_request("wallet:a", "1.00"), key="k-prefix")
    assert answer.status_code == 400 and answer.json()["reason"] == "invalid_account"
    answer = post_transaction(client, topup_request("user:a", "1.001"), key="k-precision")
    assert answer.status_code == 400 and answer.json()["errors"]
    assert requested_events() == []


def test_posted_request_is_posted_by_the_worker(live: Stack, collector: Collector, client: APIClient) -> None:
    answer = post_transaction(
        client, {"kind": "topup", "toAccount": "user:dave", "amount": "8.00", "currency": "EUR"}
    )
    transaction_id = answer.json()["transactionId"]
    assert answer.status_code == 202 and transaction_id.startswith("txn_")
    assert updates(collector, transaction_id, 2)["user:dave"]["balance"] == "8.00"
    assert Transaction.objects.filter(pk=transaction_id).exists()
    assert client.get("/api/v1/ledger/balances/user:dave/").json()["balances"] == {"EUR": "8.00"}
