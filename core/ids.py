"""The platform's ids: the prefixes it keeps for the ids it derives, and what a well-formed id is."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

# Ids the platform derives itself. A client or an outside producer that claimed one first would
# have its own object kept and the platform's dropped as a duplicate (a 0.01 transfer named
# `refund:<id>` standing in for a 50.00 refund), so none of them may come from outside.
PAYMENT_TRANSACTION_PREFIX = "payment:"  # the ledger posting of a captured payment
REFUND_TRANSACTION_PREFIX = "refund:"  # the ledger posting of a refund
SETTLEMENT_TRANSACTION_PREFIX = "settlement:"  # the ledger posting of a settlement
REVERSAL_TRANSACTION_PREFIX = "reversal:"  # the ledger posting undoing another
ORDER_PAYMENT_PREFIX = "ordpay_"  # the payment an order asks for (uuid5 of the order id)
# Notifications the platform sends by itself are named after what they are about:
# `payment:<id>:captured:email`, `refund:<id>:...`, `order:<id>:...`, `user:<id>:welcome:email`.
# A client taking one before the platform would stop the customer's real notice (delivered once).
ORDER_NOTIFICATION_PREFIX = "order:"
USER_NOTIFICATION_PREFIX = "user:"

# Every reserved prefix. They apply to every id an object is created under (payments,
# transactions, notifications, orders): the platform never needs one from outside, and one list
# keeps a new derived id from being claimable under a kind nobody thought of. Account ids are not
# object ids: `user:<name>` is how a user's ledger account is named, so they are not checked here.
RESERVED_PREFIXES: tuple[str, ...] = (
    PAYMENT_TRANSACTION_PREFIX,
    REFUND_TRANSACTION_PREFIX,
    SETTLEMENT_TRANSACTION_PREFIX,
    REVERSAL_TRANSACTION_PREFIX,
    ORDER_PAYMENT_PREFIX,
    ORDER_NOTIFICATION_PREFIX,
    USER_NOTIFICATION_PREFIX,
)

# The event fields that name the object an event creates: a record from outside the platform
# carrying a reserved id in one of them is refused before any domain sees it.
OBJECT_ID_FIELDS: frozenset[str] = frozenset({"paymentId", "transactionId", "notificationId", "orderId"})

# ASCII letters, digits and `. _ : @ + -`, starting with a letter or digit: what uuids, `pay_1001`,
# `txn_<hex>`, `ordpay_<hex>`, `payment:<id>:captured:email` and `user:alice@example.com` need.
# Nothing is normalised (NFC/NFKC): an id that is not already plain ASCII is refused rather than
# folded, because folding would let `ｂｏｂ` (fullwidth) or `bob\u200b` land on `bob`'s id, and an
# id shown to an operator must be the bytes the platform stores. The set leaves out control and
# format characters (zero width, bidi overrides), white space, look-alike letters from other
# scripts and `/` (an id is a path segment of its URL).
ID_CHARACTERS = r"[A-Za-z0-9][A-Za-z0-9._:@+-]*"
_ID = re.compile(ID_CHARACTERS)
# An account id is `<prefix>:<name>` with a lowercase prefix (user, merchant, external).
_ACCOUNT_ID = re.compile(r"(?P<prefix>[a-z]+):(?P<name>[A-Za-z0-9._:@+-]+)")


class InvalidId(ValueError):
    """An id with characters outside ID_CHARACTERS, or a reserved one where it may not be."""


class ConflictingDuplicate(Exception):
    """An id seen before arriving again with other content: not a duplicate, and not done.

    `dlq_reason` is the dead-letter reason of a Kafka record refused for it; a record so refused
    is not a failure of the work it asks for, so it gets no `*-failed` event.
    """

    dlq_reason = "conflicting_duplicate"

    def __init__(
        self, kind: str = "", object_id: str = "", differences: dict[str, object] | None = None
    ) -> None:
        # Positional with defaults: Celery rebuilds an exception from its args alone.
        self.kind = kind
        self.object_id = object_id
        self.differences = differences or {}
        super().__init__(
            f"{kind} {object_id} exists with other content ({', '.join(sorted(self.differences))})"
        )


def is_well_formed(value: str) -> bool:
    return _ID.fullmatch(value) is not None


def is_reserved(value: str) -> bool:
    """True for an id under one of the platform's prefixes (in any letter case: `Refund:x` is
    refused too, it reads as the platform's)."""
    return value.lower().startswith(RESERVED_PREFIXES)


def check_id(value: str) -> str:
    """`value` if it is a well-formed id; InvalidId otherwise (a pydantic validator)."""
    if not is_well_formed(value):
        raise InvalidId(
            "an id is ASCII letters, digits and . _ : @ + - (starting with a letter or digit); "
            f"{value!r} is not"
        )
    return value


def check_client_id(value: str) -> str:
    """`value` if a client may create an object under it: well-formed and not reserved."""
    check_id(value)
    if is_reserved(value):
        raise InvalidId(
            f"ids starting with {', '.join(RESERVED_PREFIXES)} are the platform's own; choose another"
        )
    return value


def check_account_id(value: str) -> str:
    """`value` if it is a well-formed account id (`<prefix>:<name>`); InvalidId otherwise."""
    if _ACCOUNT_ID.fullmatch(value) is None:
        raise InvalidId(
            "an account id is <prefix>:<name>, the name ASCII letters, digits and . _ : @ + -; "
            f"{value!r} is not"
        )
    return value


def account_prefix(value: str) -> str | None:
    """The prefix of a well-formed account id, None for a malformed one."""
    match = _ACCOUNT_ID.fullmatch(value)
    return match["prefix"] if match else None


# Pydantic field types of event schemas: an id checked for its characters (reserved ids pass:
# the platform's own events carry them; the API and the bridge refuse them from outside).
ObjectId = Annotated[str, AfterValidator(check_id)]
AccountId = Annotated[str, AfterValidator(check_account_id)]
