"""The ledger admin: read-only books; reversing a transaction and freezing accounts are actions."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client

from bridge import topics
from bridge.codec import loads
from bridge.models import OutboxEvent
from core.admin_display import utc_seconds
from ledger.models import Account, Transaction
from tests.ledger.support import balance, post, topup_request, transfer_request

pytestmark = pytest.mark.django_db(transaction=True)

TRANSACTIONS = "/admin/ledger/transaction/"
ACCOUNTS = "/admin/ledger/account/"


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def books() -> None:
    post(topup_request("user:alice", "100.00", transactionId="adm-1"))
    post(transfer_request("user:alice", "user:bob", "30.00", transactionId="adm-2"))


def act(client: Client, url: str, action: str, *pks: str):
    return client.post(url, {"action": action, "_selected_action": list(pks)}, follow=True)


def test_reverse_posts_the_reversing_transaction_once(admin_client: Client, books: None) -> None:
    answer = act(admin_client, TRANSACTIONS, "reverse_transactions", "adm-2")
    assert "adm-2 reversed by reversal:adm-2" in answer.content.decode().lower()
    reversal = Transaction.objects.get(pk="reversal:adm-2")
    assert reversal.kind == "reversal" and reversal.reverses_id == "adm-2" and reversal.actor == "user:root"
    assert {(e.account_id, e.direction) for e in reversal.entries.all()} == {
        ("user:alice", "credit"),
        ("user:bob", "debit"),
    }
    assert balance("user:alice") == Decimal("100.00") and balance("user:bob") == 0
    assert Transaction.objects.get(pk="adm-2").entries.count() == 2  # the original is untouched

    again = act(admin_client, TRANSACTIONS, "reverse_transactions", "adm-2")
    assert "adm-2 was already reversed" in again.content.decode().lower()
    assert Transaction.objects.filter(reverses_id="adm-2").count() == 1


def test_reversal_that_would_overdraw_is_refused_with_a_message(admin_client: Client, books: None) -> None:
    post(transfer_request("user:alice", "user:bob", "70.00", transactionId="adm-3"))  # alice spent it all
    answer = act(admin_client, TRANSACTIONS, "reverse_transactions", "adm-1")
    assert "adm-1 not reversed" in answer.content.decode().lower()
    assert not Transaction.objects.filter(pk="reversal:adm-1").exists()


def test_freeze_and_unfreeze_are_audited_actions(admin_client: Client, books: None) -> None:
    act(admin_client, ACCOUNTS, "freeze", "user:bob")
    assert Account.objects.get(pk="user:bob").frozen
    act(admin_client, ACCOUNTS, "unfreeze", "user:bob")
    assert not Account.objects.get(pk="user:bob").frozen
    audited = [
        loads(bytes(e.value))["data"]
        for e in OutboxEvent.objects.filter(topic=topics.AUDIT_LEDGER_EVENTS.name, key="user:bob").order_by(
            "id"
        )
    ]
    assert [(a["action"], a["actor"]) for a in audited] == [
        ("account.frozen", "user:root"),
        ("account.unfrozen", "user:root"),
    ]


def test_books_are_read_only_and_pages_render(admin_client: Client, books: None) -> None:
    assert admin_client.get(f"{ACCOUNTS}user:alice/change/").status_code == 200
    page = admin_client.get(ACCOUNTS).content.decode()
    assert "70.00 USD" in page
    assert "Transfer" in admin_client.get(f"{TRANSACTIONS}adm-2/change/").content.decode()
    assert admin_client.get(f"{TRANSACTIONS}add/").status_code == 403
    assert admin_client.post(f"{ACCOUNTS}user:alice/delete/", {"post": "yes"}).status_code == 403
    assert admin_client.post(f"{ACCOUNTS}user:alice/change/", {"frozen": "on"}).status_code == 403
    assert not Account.objects.get(pk="user:alice").frozen


def test_actions_need_their_permissions(books: None) -> None:
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["view_account", "view_transaction"]))
    client = Client()
    client.force_login(viewer)
    assert "reverse_transactions" not in client.get(TRANSACTIONS).content.decode()
    act(client, TRANSACTIONS, "reverse_transactions", "adm-2")
    act(client, ACCOUNTS, "freeze", "user:bob")
    assert not Transaction.objects.filter(pk="reversal:adm-2").exists()
    assert not Account.objects.get(pk="user:bob").frozen


def test_transactions_show_what_moved_with_its_currency_and_when_to_the_second(
    admin_client: Client, books: None
) -> None:
    transfer = Transaction.objects.get(pk="adm-2")
    listing = admin_client.get(TRANSACTIONS).content.decode()
    assert "30.00\xa0USD" in listing  # the debit legs' sum, one column
    assert utc_seconds(transfer.posted_at) in listing
    page = admin_client.get(f"{TRANSACTIONS}adm-2/change/").content.decode()
    assert "30.00\xa0USD" in page and utc_seconds(transfer.posted_at) in page
    assert 'id="entries-group"' in page and 'name="_save"' not in page
