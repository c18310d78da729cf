"""The ledger domain's event schemas: what it consumes and the data of what it emits (docs/events.md)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge import topics
from core.ids import AccountId, ObjectId
from core.money import Amount, Currency, check_precision, format_amount, minor_units
from ledger.kinds import (
    ACCOUNT_ID_MAX_LENGTH,
    REQUESTABLE_KINDS,
    TRANSACTION_ID_MAX_LENGTH,
    Direction,
    TransactionKind,
)


class FailureReason:
    """The `reason` values of ledger.transaction-failed."""

    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNBALANCED = "unbalanced"
    INVALID_ACCOUNT = "invalid_account"
    VALIDATION_ERROR = "validation_error"


class JournalLeg(BaseModel):
    """One leg of a journal; `currency` defaults to the transaction's."""

    model_config = ConfigDict(extra="allow")

    account: AccountId = Field(min_length=1, max_length=ACCOUNT_ID_MAX_LENGTH)
    direction: Direction
    amount: Amount
    currency: Currency | None = None


class TransactionRequested(BaseModel):
    """ledger.transaction-requested; fields beyond these are kept and passed on.

    A message missing what its kind needs (amount and currency; `toAccount` for a topup,
    `fromAccount` for a withdrawal, both for a transfer or refund; `entries` for a journal) or with
    malformed money is not understood and is dead-lettered; one that is understood but refused
    (amount not positive, unknown account prefix, unbalanced, overdraft) gets transaction-failed.
    """

    model_config = ConfigDict(extra="allow")

    transactionId: ObjectId = Field(min_length=1, max_length=TRANSACTION_ID_MAX_LENGTH)  # noqa: N815
    kind: TransactionKind
    amount: Amount | None = None
    currency: Currency | None = None
    fromAccount: AccountId | None = Field(default=None, min_length=1, max_length=ACCOUNT_ID_MAX_LENGTH)  # noqa: N815
    toAccount: AccountId | None = Field(default=None, min_length=1, max_length=ACCOUNT_ID_MAX_LENGTH)  # noqa: N815
    entries: list[JournalLeg] | None = Field(default=None, min_length=1, max_length=100)
    description: str = Field(default="", max_length=1000)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _fields_the_kind_needs(self) -> TransactionRequested:
        if self.kind not in REQUESTABLE_KINDS:
            raise ValueError(f"kind must be one of {', '.join(REQUESTABLE_KINDS)}")
        if self.kind == TransactionKind.JOURNAL:
            if not self.entries:
                raise ValueError("a journal needs `entries`")
            for leg in self.entries:
                leg.currency = leg.currency or self.currency
                if leg.currency is None:
                    raise ValueError(f"journal leg on {leg.account} has no currency")
                leg.amount = check_precision(leg.amount, leg.currency)
            if self.amount is not None and self.currency is not None:
                self.amount = check_precision(self.amount, self.currency)
            return self
        missing = [name for name in ("amount", "currency") if getattr(self, name) is None]
        needs = {
            TransactionKind.TOPUP: ("toAccount",),
            TransactionKind.WITHDRAWAL: ("fromAccount",),
            TransactionKind.TRANSFER: ("fromAccount", "toAccount"),
            TransactionKind.REFUND: ("fromAccount", "toAccount"),
        }[self.kind]
        missing += [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} needs {', '.join(missing)}")
        assert self.amount is not None and self.currency is not None
        self.amount = check_precision(self.amount, self.currency)
        return self


def money_string(amount: Decimal, currency: str) -> str:
    """A stored amount (four decimals) as the currency's decimal string: "70.00", JPY "1500"."""
    return format_amount(amount.quantize(Decimal(1).scaleb(-minor_units(currency))))


class BalanceUpdated(BaseModel):
    """Data of ledger.balance-updated: an account's balance in one currency after a posting."""

    accountId: str  # noqa: N815 - the wire name
    currency: str
    balance: str = Field(description="In the account's normal sign, with the currency's decimals.")
    transactionId: str  # noqa: N815
    version: int = Field(description="Increases by one with each change of this balance.")


def balance_updated_event(
    *, account_id: str, currency: str, balance: Decimal, transaction_id: str, version: int
) -> BalanceUpdated:
    """Data of ledger.balance-updated."""
    return BalanceUpdated(
        accountId=account_id,
        currency=currency,
        balance=money_string(balance, currency),
        transactionId=transaction_id,
        version=version,
    )


class TransactionFailed(BaseModel):
    """Data of ledger.transaction-failed; payments reads it as LedgerPostingRefused."""

    transactionId: str  # noqa: N815 - the wire name
    reason: str
    message: str


def transaction_failed_event(*, transaction_id: str, reason: str, message: str) -> TransactionFailed:
    """Data of ledger.transaction-failed."""
    return TransactionFailed(transactionId=transaction_id, reason=reason, message=message)


# The types this domain emits and the models of their `data` (bridge/schemas.py publishes their
# JSON Schemas; ledger.transaction-failed is described by its consumer's model).
EMITTED_EVENTS = {topics.LEDGER_BALANCE_UPDATED.name: BalanceUpdated}

# The topics this domain records events on (bridge.consumers.producers; docs/events.md's producers).
PRODUCES = [
    topics.LEDGER_TRANSACTION_REQUESTED,  # a client's request through the API
    topics.LEDGER_BALANCE_UPDATED,
    topics.LEDGER_TRANSACTION_FAILED,
    topics.AUDIT_LEDGER_EVENTS,
]
