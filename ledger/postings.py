"""Postings: the legs a transaction posts, built from a request, a captured payment or a reversal,
and the rules a posting must satisfy before it reaches the database (which checks them again).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings

from core import ids
from core.ids import ConflictingDuplicate
from ledger.events import FailureReason, TransactionRequested
from ledger.kinds import TRANSACTION_ID_MAX_LENGTH, AccountKind, Direction, TransactionKind
from payments.events import PaymentProcessed

# The prefix decides the kind: user: and merchant: are liabilities, external: assets.
ACCOUNT_KINDS: dict[str, AccountKind] = {
    "user": AccountKind.LIABILITY,
    "merchant": AccountKind.LIABILITY,
    "external": AccountKind.ASSET,
}
BANK_ACCOUNT = "external:bank"
PSP_ACCOUNT = "external:psp"
FX_ACCOUNT = "external:fx"
# The metadata key of an FX journal's rate (units of the second currency per unit of the first).
FX_RATE_KEY = "fxRate"


class LedgerRefused(Exception):
    """A posting that is understood but refused by a rule; `reason` is transaction-failed's."""

    reason = FailureReason.VALIDATION_ERROR


class InvalidPosting(LedgerRefused):
    reason = FailureReason.VALIDATION_ERROR


class InvalidAccount(LedgerRefused):
    reason = FailureReason.INVALID_ACCOUNT


class Unbalanced(LedgerRefused):
    reason = FailureReason.UNBALANCED


class InsufficientFunds(LedgerRefused):
    reason = FailureReason.INSUFFICIENT_FUNDS


def account_kind(account_id: str) -> AccountKind:
    prefix = ids.account_prefix(account_id)
    kind = ACCOUNT_KINDS.get(prefix) if prefix else None
    if kind is None:
        raise InvalidAccount(
            f"account {account_id!r} does not start with one of "
            + ", ".join(f"{prefix}:" for prefix in ACCOUNT_KINDS)
        )
    return kind


@dataclass(frozen=True)
class Leg:
    account_id: str
    currency: str
    direction: str
    amount: Decimal

    @property
    def signed(self) -> Decimal:
        """Debits positive, credits negative: a balanced posting's legs sum to zero per currency."""
        return self.amount if self.direction == Direction.DEBIT else -self.amount

    def change_for(self, kind: str) -> Decimal:
        """How this leg moves the account's balance in its normal sign."""
        return -self.signed if kind == AccountKind.LIABILITY else self.signed

    def reversed(self) -> Leg:
        flipped = Direction.CREDIT if self.direction == Direction.DEBIT else Direction.DEBIT
        return replace(self, direction=flipped.value)


@dataclass(frozen=True)
class Posting:
    transaction_id: str
    kind: str
    legs: tuple[Leg, ...]
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    reverses: str | None = None

    @property
    def account_ids(self) -> list[str]:
        return sorted({leg.account_id for leg in self.legs})

    @property
    def currencies(self) -> list[str]:
        return sorted({leg.currency for leg in self.legs})


def _leg_key(leg: Leg) -> tuple[str, str, str, Decimal]:
    return (leg.account_id, leg.currency, leg.direction, leg.amount)


def conflict_with(posting: Posting, *, kind: str, legs: Iterable[Leg]) -> ConflictingDuplicate | None:
    """The conflict between `posting` and the transaction stored under its id (`kind`, `legs`),
    None when they move the same money the same way (a true duplicate: posted once)."""
    differences: dict[str, object] = {}
    if posting.kind != kind:
        differences["kind"] = f"{kind} -> {posting.kind}"
    stored = sorted(_leg_key(leg) for leg in legs)
    new = sorted(_leg_key(leg) for leg in posting.legs)
    if stored != new:
        differences["entries"] = f"{_legs_text(stored)} -> {_legs_text(new)}"
    if not differences:
        return None
    return ConflictingDuplicate(kind="transaction", object_id=posting.transaction_id, differences=differences)


def _legs_text(legs: list[tuple[str, str, str, Decimal]]) -> str:
    return "; ".join(
        f"{direction} {account} {amount:f} {currency}" for account, currency, direction, amount in legs
    )


def checked(posting: Posting) -> Posting:
    """The posting with its legs in lock order, or LedgerRefused saying which rule it breaks."""
    if not 0 < len(posting.transaction_id) <= TRANSACTION_ID_MAX_LENGTH:
        raise InvalidPosting(f"a transactionId has 1 to {TRANSACTION_ID_MAX_LENGTH} characters")
    if not posting.legs:
        raise Unbalanced("a transaction needs entries")
    supported = set(settings.LEDGER_SUPPORTED_CURRENCIES)
    for leg in posting.legs:
        if leg.amount <= 0:
            raise InvalidPosting(f"amount must be positive, got {leg.amount} on {leg.account_id}")
        if leg.currency not in supported:
            raise InvalidPosting(f"currency {leg.currency} is not supported")
        account_kind(leg.account_id)
    keys = [(leg.account_id, leg.currency) for leg in posting.legs]
    if len(set(keys)) != len(keys):
        raise InvalidPosting("an account appears in more than one leg of the same currency")
    sums: dict[str, Decimal] = defaultdict(Decimal)
    for leg in posting.legs:
        sums[leg.currency] += leg.signed
    off = {currency: total for currency, total in sorted(sums.items()) if total != 0}
    if off:
        detail = ", ".join(f"{currency} debits - credits = {total:f}" for currency, total in off.items())
        raise Unbalanced(f"entries do not balance: {detail}")
    # One stable order for every posting: balance rows are locked and updated in it.
    return replace(posting, legs=tuple(sorted(posting.legs, key=lambda leg: (leg.account_id, leg.currency))))


def _transfer(request: TransactionRequested) -> tuple[str, str]:
    kind = request.kind
    source = request.fromAccount or BANK_ACCOUNT
    target = request.toAccount or BANK_ACCOUNT
    wanted: dict[str, tuple[set[AccountKind], set[AccountKind]]] = {
        TransactionKind.TOPUP: ({AccountKind.ASSET}, {AccountKind.LIABILITY}),
        TransactionKind.WITHDRAWAL: ({AccountKind.LIABILITY}, {AccountKind.ASSET}),
        TransactionKind.TRANSFER: ({AccountKind.LIABILITY}, {AccountKind.LIABILITY}),
        TransactionKind.REFUND: ({AccountKind.LIABILITY}, {AccountKind.LIABILITY, AccountKind.ASSET}),
    }
    source_kinds, target_kinds = wanted[kind]
    if account_kind(source) not in source_kinds:
        raise InvalidAccount(f"a {kind} cannot move money from {source}")
    if account_kind(target) not in target_kinds:
        raise InvalidAccount(f"a {kind} cannot move money to {target}")
    if source == target:
        raise InvalidPosting(f"fromAccount and toAccount are both {source}")
    return source, target


def _fx_rate(metadata: dict[str, Any]) -> Decimal:
    raw = metadata.get(FX_RATE_KEY)
    try:
        rate = Decimal(str(raw)) if raw is not None and not isinstance(raw, bool | float) else None
    except InvalidOperation:
        rate = None
    if rate is None or not rate.is_finite() or rate <= 0:
        raise InvalidPosting(f"a journal in several currencies must record metadata.{FX_RATE_KEY} > 0")
    return rate


def from_request(request: TransactionRequested) -> Posting:
    """The posting a ledger.transaction-requested asks for (money moves fromAccount -> toAccount)."""
    if request.kind == TransactionKind.JOURNAL:
        assert request.entries is not None
        legs = tuple(
            Leg(leg.account, leg.currency or "", leg.direction, leg.amount) for leg in request.entries
        )
        currencies = {leg.currency for leg in legs}
        if len(currencies) > 1:
            # An exchange: each currency balances on its own through the FX account, rate recorded.
            _fx_rate(request.metadata)
            through_fx = {leg.currency for leg in legs if leg.account_id == FX_ACCOUNT}
            if through_fx != currencies:
                raise InvalidPosting(f"a journal in several currencies goes through {FX_ACCOUNT} in each")
    else:
        assert request.amount is not None and request.currency is not None
        source, target = _transfer(request)
        legs = (
            Leg(source, request.currency, Direction.DEBIT.value, request.amount),
            Leg(target, request.currency, Direction.CREDIT.value, request.amount),
        )
    return Posting(
        transaction_id=request.transactionId,
        kind=request.kind,
        legs=legs,
        description=request.description,
        metadata=request.metadata,
    )


# --- what other domains ask the ledger to post: the ids and postings of payments ------------------

PAYMENT_TRANSACTION_PREFIX = ids.PAYMENT_TRANSACTION_PREFIX
REFUND_TRANSACTION_PREFIX = ids.REFUND_TRANSACTION_PREFIX


def payment_transaction_id(payment_id: str) -> str:
    """The transactionId of a captured payment's posting."""
    return f"{PAYMENT_TRANSACTION_PREFIX}{payment_id}"


def payment_id_of(transaction_id: str) -> str | None:
    """The paymentId whose capture `transaction_id` posts; None for any other transaction."""
    if not transaction_id.startswith(PAYMENT_TRANSACTION_PREFIX):
        return None
    return transaction_id.removeprefix(PAYMENT_TRANSACTION_PREFIX)


def merchant_account(merchant_id: str) -> str:
    return f"merchant:{merchant_id}"


def is_capture(payment: PaymentProcessed) -> bool:
    """Whether a payments.payment-processed event is a capture the ledger posts."""
    return payment.is_capture


def from_payment(payment: PaymentProcessed) -> Posting:
    """A captured payment: Dr external:psp / Cr merchant:<merchantId>."""
    return capture_posting(
        payment_id=payment.paymentId,
        merchant_id=payment.merchantId,
        amount=payment.amount,
        currency=payment.currency,
        user_id=payment.userId,
    )


def capture_posting(
    *, payment_id: str, merchant_id: str, amount: Decimal, currency: str, user_id: str
) -> Posting:
    """The posting of a capture, as the ledger makes it (payments compares its captures with it)."""
    return Posting(
        transaction_id=payment_transaction_id(payment_id),
        kind=TransactionKind.PAYMENT,
        legs=(
            Leg(PSP_ACCOUNT, currency, Direction.DEBIT.value, amount),
            Leg(merchant_account(merchant_id), currency, Direction.CREDIT.value, amount),
        ),
        description=f"Payment {payment_id}",
        metadata={"paymentId": payment_id, "userId": user_id},
    )


def refund_posting(
    *, payment_id: str, refund_id: str, merchant_id: str, amount: Decimal, currency: str
) -> TransactionRequested:
    """A payment's refund, to request on ledger.transaction-requested: the merchant gives the
    amount back to the PSP (Dr merchant:<merchantId> / Cr external:psp)."""
    return TransactionRequested(
        transactionId=f"{ids.REFUND_TRANSACTION_PREFIX}{refund_id}",
        kind=TransactionKind.REFUND,
        amount=amount,
        currency=currency,
        fromAccount=merchant_account(merchant_id),
        toAccount=PSP_ACCOUNT,
        description=f"Refund {refund_id} of payment {payment_id}",
        metadata={"paymentId": payment_id, "refundId": refund_id},
    )


def settlement_posting(
    *, settlement_id: str, merchant_id: str, amount: Decimal, currency: str, payment_count: int
) -> TransactionRequested:
    """A merchant's settlement, to request on ledger.transaction-requested: the net amount leaves
    for the merchant's bank (Dr merchant:<merchantId> / Cr external:bank)."""
    return TransactionRequested(
        transactionId=f"{ids.SETTLEMENT_TRANSACTION_PREFIX}{settlement_id}",
        kind=TransactionKind.WITHDRAWAL,
        amount=amount,
        currency=currency,
        fromAccount=merchant_account(merchant_id),
        toAccount=BANK_ACCOUNT,
        description=f"Settlement {settlement_id} of {payment_count} payments",
        metadata={"settlementId": settlement_id, "paymentCount": payment_count},
    )


def reversal_of(*, transaction_id: str, legs: Iterable[Leg], reason: str = "") -> Posting:
    """The transaction that undoes `transaction_id`: every leg flipped; its id is deterministic."""
    return Posting(
        transaction_id=f"{ids.REVERSAL_TRANSACTION_PREFIX}{transaction_id}",
        kind=TransactionKind.REVERSAL,
        legs=tuple(leg.reversed() for leg in legs),
        description=f"Reversal of {transaction_id}" + (f": {reason}" if reason else ""),
        metadata={"reverses": transaction_id, **({"reason": reason} if reason else {})},
        reverses=transaction_id,
    )
