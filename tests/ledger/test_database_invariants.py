"""The ledger's invariants hold in PostgreSQL itself: SQL that tries to break them is refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction

from ledger import services
from ledger.models import Account, Balance, Entry, Transaction
from ledger.postings import InsufficientFunds
from tests.ledger.support import balance, post, topup_request, transfer_request

pytestmark = pytest.mark.django_db(transaction=True)


def sql(statement: str, params: list[object] | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params or [])


def raw_posting(transaction_id: str, *legs: tuple[str, str, str]) -> None:
    """A transaction and its entries written in plain SQL, bypassing every Python check."""
    sql(
        "INSERT INTO ledger_transaction (transaction_id, kind, description, metadata, actor, correlation_id)"
        " VALUES (%s, 'journal', '', '{}', 'sql', '')",
        [transaction_id],
    )
    for account, direction, amount in legs:
        sql(
            "INSERT INTO ledger_entry (transaction_id, account_id, currency, direction, amount)"
            " VALUES (%s, %s, 'USD', %s, %s)",
            [transaction_id, account, direction, amount],
        )


@pytest.fixture
def funded() -> None:
    """user:alice holds 100.00 USD (external:bank 100.00); accounts exist for raw SQL to use."""
    post(topup_request("user:alice", "100.00", transactionId="seed"))
    Account.objects.bulk_create(
        [
            Account(id="external:other", kind="asset", allow_negative=True),
            Account(id="user:bob", kind="liability"),
        ]
    )


def test_posting_keeps_balances_versions_and_running_balance_on_entries(funded: None) -> None:
    post(transfer_request("user:alice", "user:bob", "30.00", transactionId="t1"))
    post(transfer_request("user:alice", "user:bob", "20.00", transactionId="t2"))
    assert balance("user:alice") == Decimal("50.00") and balance("user:bob") == Decimal("50.00")
    assert balance("external:bank") == Decimal("100.00")  # an asset: debits raise it
    alice = Balance.objects.get(account_id="user:alice", currency="USD")
    assert alice.version == 3
    assert list(
        Entry.objects.filter(account_id="user:alice").order_by("id").values_list("version", "balance_after")
    ) == [(1, Decimal("100")), (2, Decimal("70")), (3, Decimal("50"))]


def test_update_of_an_entry_is_refused(funded: None) -> None:
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        sql("UPDATE ledger_entry SET amount = 1000 WHERE transaction_id = 'seed'")
    assert sorted(Entry.objects.filter(transaction_id="seed").values_list("amount", flat=True)) == [
        Decimal("100"),
        Decimal("100"),
    ]


def test_delete_of_an_entry_or_transaction_is_refused(funded: None) -> None:
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        sql("DELETE FROM ledger_entry WHERE transaction_id = 'seed'")
    with pytest.raises(IntegrityError, match="immutable"), transaction.atomic():
        sql(
            "UPDATE ledger_transaction SET kind = 'topup', description = 'edited'"
            " WHERE transaction_id = 'seed'"
        )
    assert Entry.objects.filter(transaction_id="seed").count() == 2


def test_unbalanced_entries_are_refused_at_commit(funded: None) -> None:
    with pytest.raises(IntegrityError, match="does not balance in USD"), transaction.atomic():
        raw_posting("raw-unbalanced", ("external:bank", "debit", "10"), ("external:other", "credit", "9"))
    assert not Transaction.objects.filter(pk="raw-unbalanced").exists()
    assert balance("external:other") == 0


def test_entries_appended_later_to_a_posted_transaction_must_balance_too(funded: None) -> None:
    with pytest.raises(IntegrityError, match="does not balance"), transaction.atomic():
        sql(
            "INSERT INTO ledger_entry (transaction_id, account_id, currency, direction, amount)"
            " VALUES ('seed', 'external:other', 'USD', 'debit', 5)"
        )


def test_a_transaction_without_entries_is_refused(funded: None) -> None:
    with pytest.raises(IntegrityError, match="has no entries"), transaction.atomic():
        raw_posting("raw-empty")


def test_balanced_raw_sql_posting_is_accepted_and_moves_balances(funded: None) -> None:
    with transaction.atomic():
        raw_posting("raw-ok", ("external:other", "debit", "7"), ("external:bank", "credit", "7"))
    assert balance("external:other") == Decimal("7") and balance("external:bank") == Decimal("93")


def test_overdraft_written_in_sql_is_refused_by_the_check_constraint(funded: None) -> None:
    with (
        pytest.raises(IntegrityError, match="ledger_balance_non_negative_unless_allowed"),
        transaction.atomic(),
    ):
        raw_posting("raw-overdraft", ("user:alice", "debit", "100.01"), ("user:bob", "credit", "100.01"))
    assert balance("user:alice") == Decimal("100.00")


def test_database_refuses_the_overdraft_even_when_the_code_check_is_skipped(
    funded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_check_funds", lambda *args: None)
    with pytest.raises(InsufficientFunds, match="database refused"):
        post(transfer_request("user:alice", "user:bob", "150.00", transactionId="t-over"))
    assert not Transaction.objects.filter(pk="t-over").exists()
    assert balance("user:alice") == Decimal("100.00") and balance("user:bob") == 0


def test_may_go_negative_flag_lets_a_liability_overdraw_in_code_and_database(funded: None) -> None:
    Account.objects.filter(pk="user:alice").update(allow_negative=True)
    post(transfer_request("user:alice", "user:bob", "150.00", transactionId="t-credit-line"))
    assert balance("user:alice") == Decimal("-50.00")
    # Without the flag the same overdraft is refused by both the code and the database.
    with pytest.raises(InsufficientFunds):
        post(transfer_request("user:bob", "user:alice", "150.01", transactionId="t-no-line"))


def test_balances_cannot_be_written_directly(funded: None) -> None:
    with pytest.raises(IntegrityError, match="only by posting entries"), transaction.atomic():
        sql("UPDATE ledger_balance SET balance = 1000000 WHERE account_id = 'user:alice'")
    with pytest.raises(IntegrityError, match="only by posting entries"), transaction.atomic():
        sql(
            "INSERT INTO ledger_balance (account_id, currency, balance, version, allow_negative, updated_at)"
            " VALUES ('user:bob', 'EUR', 500, 0, false, now())"
        )
    with pytest.raises(IntegrityError, match="only by posting entries"), transaction.atomic():
        sql("DELETE FROM ledger_balance WHERE account_id = 'user:alice'")
    assert balance("user:alice") == Decimal("100.00")
    assert not Balance.objects.filter(account_id="user:bob", currency="EUR").exists()
