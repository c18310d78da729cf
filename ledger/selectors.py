"""Ledger reads: balances, an account's statement, transactions with their entries, and what other
domains may ask of the ledger (whether a transaction is posted, the postings under an id prefix)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db.models import Prefetch, QuerySet

from ledger.models import Account, Balance, ClientAccount, Entry, Transaction

# Who may read every account and transaction (operators, auditors); a client reads its own.
VIEW_ALL_PERMISSION = "ledger.view_transaction"
# Who may request any posting on any account (operators); a client may `transfer` from its own.
POST_ANY_PERMISSION = "ledger.post_transaction"


def accounts_of(user: Any) -> set[str]:
    """The ledger account ids assigned to an API client (by an operator, in the admin)."""
    return set(ClientAccount.objects.filter(client=user).values_list("account_id", flat=True))


def account_visible_to(*, user: Any, account_id: str) -> bool:
    """May `user` read this account's balances and statement?"""
    return bool(
        user.has_perm(VIEW_ALL_PERMISSION)
        or ClientAccount.objects.filter(client=user, account_id=account_id).exists()
    )


def transactions_visible_to(user: Any, transactions: QuerySet[Transaction]) -> QuerySet[Transaction]:
    """Of `transactions`, what `user` may read: all for operators and auditors, else those that
    touch an account assigned to the client."""
    if user.has_perm(VIEW_ALL_PERMISSION):
        return transactions
    owned = ClientAccount.objects.filter(client=user).values("account_id")
    return transactions.filter(pk__in=Entry.objects.filter(account_id__in=owned).values("transaction_id"))


def account_balances(*, account_id: str) -> dict[str, Decimal] | None:
    """The account's balance per currency; None for an account never used."""
    rows = list(Balance.objects.filter(account_id=account_id).values_list("currency", "balance"))
    if not rows and not Account.objects.filter(pk=account_id).exists():
        return None
    return dict(sorted(rows))


def account_statement(
    *,
    account_id: str,
    currency: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Entry]:
    """The account's entries in posting order, each with the balance it left (running balance)."""
    entries = Entry.objects.filter(account_id=account_id).select_related("transaction").order_by("id")
    if currency:
        entries = entries.filter(currency=currency)
    if since:
        entries = entries.filter(transaction__posted_at__gte=since)
    if until:
        entries = entries.filter(transaction__posted_at__lt=until)
    return entries


def transaction_list(
    *,
    kind: str | None = None,
    account_id: str | None = None,
    currency: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> QuerySet[Transaction]:
    """Transactions newest first with their entries (one query for the page, one for the entries)."""
    transactions = Transaction.objects.select_related("reversed_by").prefetch_related(
        Prefetch("entries", queryset=Entry.objects.order_by("id"))
    )
    if kind:
        transactions = transactions.filter(kind=kind)
    # One filter() call: account and currency must match the same entry.
    entry_filter = {
        name: value
        for name, value in (("entries__account_id", account_id), ("entries__currency", currency))
        if value
    }
    if entry_filter:
        transactions = transactions.filter(**entry_filter).distinct()
    if since:
        transactions = transactions.filter(posted_at__gte=since)
    if until:
        transactions = transactions.filter(posted_at__lt=until)
    return transactions.order_by("-posted_at", "transaction_id")


# --- for other domains: the ledger's public answers (never read its models from outside) ---------


def transaction_posted(transaction_id: str) -> bool:
    """Has the ledger posted a transaction under this id (whatever came of it since)?"""
    return Transaction.objects.filter(pk=transaction_id).exists()


@dataclass(frozen=True)
class PostedLeg:
    account_id: str
    currency: str
    direction: str
    amount: Decimal


@dataclass(frozen=True)
class PostedTransaction:
    """A posted transaction as another domain may compare it: its legs, and whether it was reversed."""

    transaction_id: str
    posted_at: datetime
    legs: tuple[PostedLeg, ...]
    reversed: bool


def transactions_posted_under(prefix: str) -> Iterator[PostedTransaction]:
    """Every posted transaction whose id starts with `prefix` (e.g. `payment:`), in id order.

    Streams with two server-side cursors (entries, reversals) read in the caller's transaction:
    a caller comparing the ledger with its own tables reads both in one snapshot.
    """
    reversed_ids = set(
        Transaction.objects.filter(reverses__pk__startswith=prefix)
        .values_list("reverses_id", flat=True)
        .iterator()
    )
    entries = (
        Entry.objects.filter(transaction__pk__startswith=prefix)
        .order_by("transaction_id", "id")
        .values_list(
            "transaction_id", "transaction__posted_at", "account_id", "currency", "direction", "amount"
        )
        .iterator(chunk_size=2000)
    )
    current: str | None = None
    posted_at: datetime | None = None
    legs: list[PostedLeg] = []
    for transaction_id, at, account_id, currency, direction, amount in entries:
        if transaction_id != current:
            if current is not None and posted_at is not None:
                yield PostedTransaction(current, posted_at, tuple(legs), current in reversed_ids)
            current, posted_at, legs = transaction_id, at, []
        legs.append(PostedLeg(account_id, currency, direction, amount))
    if current is not None and posted_at is not None:
        yield PostedTransaction(current, posted_at, tuple(legs), current in reversed_ids)
