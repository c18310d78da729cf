"""Ledger tables: accounts, their per-currency balances, transactions and their immutable entries.

The invariants are PostgreSQL's to keep (migration 0002): a transaction's entries sum to zero per
currency (deferred constraint trigger), entries and transactions are never updated or deleted, a
balance changes only through the trigger that applies each inserted entry to it, and a balance
below zero needs the account's may-go-negative flag (check constraint). The code checks the same
rules first so that refusals are clean; the database is the backstop nothing can bypass.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models.functions import Now

from core.codec import EventJSONDecoder, EventJSONEncoder
from ledger.kinds import (
    ACCOUNT_ID_MAX_LENGTH,
    TRANSACTION_ID_MAX_LENGTH,
    AccountKind,
    Direction,
    TransactionKind,
)


class Account(models.Model):
    """An account id (`user:alice`, `merchant:m1`, `external:psp`); its kind comes from the prefix."""

    id = models.CharField(primary_key=True, max_length=ACCOUNT_ID_MAX_LENGTH)
    kind = models.CharField(max_length=16, choices=AccountKind.choices)
    allow_negative = models.BooleanField(
        default=False, help_text="May its balances go below zero (true for external accounts)."
    )
    frozen = models.BooleanField(default=False, help_text="A frozen account refuses every posting.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["id"]
        permissions = [("freeze_account", "Can freeze and unfreeze ledger accounts")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=AccountKind.values), name="ledger_account_kind"
            ),
        ]

    def __str__(self) -> str:
        return self.id


class Balance(models.Model):
    """An account's balance in one currency, in its normal sign; `version` +1 per change.

    Written only by the entry trigger; `allow_negative` is the account's flag, copied on each change
    so that a plain check constraint can enforce it.
    """

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="balances")
    currency = models.CharField(max_length=3)
    balance = models.DecimalField(max_digits=20, decimal_places=4, default=0)
    version = models.BigIntegerField(default=0)
    allow_negative = models.BooleanField(default=False)
    updated_at = models.DateTimeField(db_default=Now())

    class Meta:
        ordering = ["account_id", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["account", "currency"], name="ledger_balance_per_currency"),
            models.CheckConstraint(
                condition=models.Q(balance__gte=0) | models.Q(allow_negative=True),
                name="ledger_balance_non_negative_unless_allowed",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id} {self.balance} {self.currency} v{self.version}"


class Transaction(models.Model):
    """One posting, once per transactionId; its entries balance per currency."""

    transaction_id = models.CharField(primary_key=True, max_length=TRANSACTION_ID_MAX_LENGTH)
    kind = models.CharField(max_length=16, choices=TransactionKind.choices, db_index=True)
    description = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True, encoder=EventJSONEncoder, decoder=EventJSONDecoder)
    reverses = models.OneToOneField(
        "self",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reversed_by",
        help_text="The transaction this one reverses; a transaction is reversed at most once.",
    )
    actor = models.CharField(max_length=255)
    correlation_id = models.CharField(max_length=255, blank=True)
    posted_at = models.DateTimeField(db_default=Now(), db_index=True)

    class Meta:
        ordering = ["-posted_at", "transaction_id"]
        permissions = [
            ("reverse_transaction", "Can post the reversal of a ledger transaction"),
            # Any kind on any account (topup, withdrawal, journal, refund, transfer) through the API;
            # without it a client may only `transfer` from an account assigned to it.
            ("post_transaction", "Can request ledger postings of any kind on any account"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=TransactionKind.values), name="ledger_transaction_kind"
            ),
        ]

    def __str__(self) -> str:
        return self.transaction_id


class Entry(models.Model):
    """One leg of a transaction. `balance_after` and `version` are set by the entry trigger."""

    transaction = models.ForeignKey(Transaction, on_delete=models.PROTECT, related_name="entries")
    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="entries")
    currency = models.CharField(max_length=3)
    direction = models.CharField(max_length=6, choices=Direction.choices)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    # db_default makes Django read the trigger's values back from INSERT ... RETURNING.
    balance_after = models.DecimalField(max_digits=20, decimal_places=4, db_default=0)
    version = models.BigIntegerField(db_default=0)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "entries"
        indexes = [models.Index(fields=["account", "currency", "id"], name="ledger_entry_statement")]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="ledger_entry_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(direction__in=Direction.values), name="ledger_entry_direction"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.direction} {self.account_id} {self.amount} {self.currency}"


class Reconciliation(models.Model):
    """One run of the reconciliation: balances recomputed from entries, currencies summed."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    balances_checked = models.PositiveIntegerField()
    mismatches = models.JSONField(
        default=list, encoder=EventJSONEncoder, decoder=EventJSONDecoder, help_text="Balances that differ."
    )
    imbalances = models.JSONField(
        default=list, encoder=EventJSONEncoder, decoder=EventJSONDecoder, help_text="Currencies not at zero."
    )
    alert_id = models.CharField(max_length=64, blank=True, help_text="The compliance alert raised, if any.")

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"reconciliation {self.started_at:%Y-%m-%d %H:%M:%S} {'ok' if self.ok else 'MISMATCH'}"

    @property
    def ok(self) -> bool:
        return not self.mismatches and not self.imbalances


class ClientAccount(models.Model):
    """A ledger account assigned to an API client by an operator.

    The client may read the account's balances and statement and `transfer` from it; nothing else.
    The account id need not have been used yet (it is created by its first posting).
    """

    account_id = models.CharField(max_length=ACCOUNT_ID_MAX_LENGTH, unique=True)
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ledger_accounts"
    )
    assigned_at = models.DateTimeField(auto_now_add=True)
    assigned_by = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["account_id"]

    def __str__(self) -> str:
        return f"{self.account_id} → {self.client}"
