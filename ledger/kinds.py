"""The ledger's vocabulary: account kinds, entry directions, transaction kinds, id lengths.

Kept apart from models.py so that event schemas (imported by the bridge's routing table) can use
it without the Django app registry.
"""

from __future__ import annotations

from django.db import models

ACCOUNT_ID_MAX_LENGTH = 160
TRANSACTION_ID_MAX_LENGTH = 255


class AccountKind(models.TextChoices):
    """Liabilities are what the platform owes (users, merchants); assets are money outside it."""

    LIABILITY = "liability"
    ASSET = "asset"


class Direction(models.TextChoices):
    DEBIT = "debit"
    CREDIT = "credit"


class TransactionKind(models.TextChoices):
    # What ledger.transaction-requested may ask for (docs/ledger.md, Kinds).
    TOPUP = "topup"
    WITHDRAWAL = "withdrawal"
    TRANSFER = "transfer"
    REFUND = "refund"
    JOURNAL = "journal"
    # Posted by the ledger itself: a captured payment, and the reversal of a posted transaction.
    PAYMENT = "payment"
    REVERSAL = "reversal"


REQUESTABLE_KINDS = (
    TransactionKind.TOPUP,
    TransactionKind.WITHDRAWAL,
    TransactionKind.TRANSFER,
    TransactionKind.REFUND,
    TransactionKind.JOURNAL,
)
