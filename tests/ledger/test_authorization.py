"""Who may do what in the ledger: clients read and transfer from the accounts assigned to them.

The attacks seen on the open platform, made as the attacker made them (HTTP with real tokens, the
admin with a logged-in operator): a client topping up its own account from `external:bank`,
transferring out of a merchant's account, and reading every balance, statement and transaction.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal

import pytest
from django.test import Client

from audit.models import AuditEvent
from core.roles import AUDITORS, OPERATORS
from ledger.models import ClientAccount, Transaction
from tests.conftest import Stack
from tests.ledger.support import balance, post, topup_request
from tests.support.users import make_api_user, token_client
from tests.support.waiting import wait_until


def _post_transaction(api: object, body: dict) -> object:
    return api.post(  # type: ignore[attr-defined]
        "/api/v1/ledger/transactions/",
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=str(uuid.uuid4()),
    )


def _assign_in_admin(operator: object, account_id: str, client: object) -> None:
    """An operator assigns the account through the admin's add form, as in production."""
    browser = Client()
    operator.is_staff = True  # type: ignore[attr-defined] - may open the admin; rights are its group's
    operator.save()  # type: ignore[attr-defined]
    browser.force_login(operator)
    answer = browser.post(
        "/admin/ledger/clientaccount/add/",
        {"account_id": account_id, "client": client.pk},  # type: ignore[attr-defined]
    )
    assert answer.status_code == 302, answer.content.decode()[:2000]


@pytest.mark.django_db
def test_a_client_cannot_mint_money_or_move_a_merchants_money() -> None:
    client_b = make_api_user("b")
    api_b = token_client(client_b)
    ClientAccount.objects.create(account_id=f"user:{client_b.username}", client=client_b)
    post(topup_request("merchant:m_a", "50.00"))

    minted = _post_transaction(
        api_b,
        {
            "kind": "topup",
            "fromAccount": "external:bank",
            "toAccount": f"user:{client_b.username}",
            "amount": "1000000",
            "currency": "USD",
        },
    )
    assert minted.status_code == 403 and minted["Content-Type"] == "application/problem+json"
    stolen = _post_transaction(
        api_b,
        {
            "kind": "transfer",
            "fromAccount": "merchant:m_a",
            "toAccount": f"user:{client_b.username}",
            "amount": "10.00",
            "currency": "USD",
        },
    )
    assert stolen.status_code == 403
    assert balance("merchant:m_a") == Decimal("50.00")


@pytest.mark.django_db
def test_a_client_reads_only_the_accounts_assigned_to_it() -> None:
    client_a, client_b = make_api_user("a"), make_api_user("b")
    ClientAccount.objects.create(account_id="user:a-acct", client=client_a)
    post(topup_request("user:a-acct", "70.00", transactionId="auth-a-1"))
    post(topup_request("merchant:m_a", "5.00", transactionId="auth-m-1"))
    api_a, api_b = token_client(client_a), token_client(client_b)

    assert api_a.get("/api/v1/ledger/balances/user:a-acct/").json()["balances"] == {"USD": "70.00"}
    for url in (
        "/api/v1/ledger/balances/user:a-acct/",
        "/api/v1/ledger/accounts/user:a-acct/entries/",
        "/api/v1/ledger/balances/merchant:m_a/",
        "/api/v1/ledger/transactions/auth-a-1/",
    ):
        answer = api_b.get(url)
        assert answer.status_code == 404, url
        assert answer["Content-Type"] == "application/problem+json"
    assert api_b.get("/api/v1/ledger/transactions/").json()["results"] == []
    seen_by_a = [t["transactionId"] for t in api_a.get("/api/v1/ledger/transactions/").json()["results"]]
    assert seen_by_a == ["auth-a-1"]

    auditor = token_client(make_api_user("auditor", role=AUDITORS))
    assert auditor.get("/api/v1/ledger/balances/merchant:m_a/").status_code == 200
    audited = {t["transactionId"] for t in auditor.get("/api/v1/ledger/transactions/").json()["results"]}
    assert {"auth-a-1", "auth-m-1"} <= audited
    refused = _post_transaction(
        auditor,
        {"kind": "topup", "toAccount": "user:a-acct", "amount": "1.00", "currency": "USD"},
    )
    assert refused.status_code == 403


def test_an_operator_assigns_an_account_and_the_client_transfers_from_it(live: Stack) -> None:
    operator = make_api_user("operator", role=OPERATORS)
    client_b = make_api_user("b")
    source = f"user:{client_b.username}"
    _assign_in_admin(operator, source, client_b)
    assert ClientAccount.objects.get(account_id=source).client == client_b

    topped = _post_transaction(
        token_client(operator),
        {"kind": "topup", "toAccount": source, "amount": "20.00", "currency": "USD"},
    )
    assert topped.status_code == 202
    wait_until(lambda: balance(source) == Decimal("20.00"), timeout_s=60, what="the operator's topup")

    moved = _post_transaction(
        token_client(client_b),
        {
            "kind": "transfer",
            "fromAccount": source,
            "toAccount": "user:elsewhere",
            "amount": "7.50",
            "currency": "USD",
        },
    )
    assert moved.status_code == 202
    transaction_id = moved.json()["transactionId"]
    wait_until(lambda: Transaction.objects.filter(pk=transaction_id).exists(), timeout_s=60, what="posting")
    assert balance(source) == Decimal("12.50")
    assert Transaction.objects.get(pk=transaction_id).actor == f"user:{client_b.username}"

    # The worker posted it, but the client asked: the audit log says so.
    record = wait_until(
        lambda: AuditEvent.objects.filter(subject_id=transaction_id).first(), timeout_s=60, what="audit"
    )
    assert record.actor == f"user:{client_b.username}"
    assignment = wait_until(
        lambda: AuditEvent.objects.filter(subject_id=source, action="account.assigned").first(),
        timeout_s=60,
        what="the assignment's audit record",
    )
    assert assignment.actor == f"user:{operator.username}"


@pytest.mark.django_db
# (A trailing newline never reaches the check here: the admin form strips surrounding white space.)
@pytest.mark.parametrize("account_id", ["user:bob\u200b", "user:b\u043eb", "user:bob/x", "bob"])
def test_the_admin_refuses_to_assign_an_account_id_nobody_could_name_again(account_id: str) -> None:
    operator = make_api_user(f"op_{uuid.uuid4().hex[:6]}", role=OPERATORS)
    client_b = make_api_user(f"b_{uuid.uuid4().hex[:6]}")
    browser = Client()
    operator.is_staff = True
    operator.save()
    browser.force_login(operator)
    answer = browser.post(
        "/admin/ledger/clientaccount/add/", {"account_id": account_id, "client": client_b.pk}
    )
    assert answer.status_code == 200  # the form again, with its error; nothing assigned
    assert "an account id is" in answer.content.decode()
    assert not ClientAccount.objects.filter(client=client_b).exists()
