"""The payments domain's event schemas: what it consumes and what it emits (docs/events.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from bridge import topics
from core.ids import ObjectId
from core.money import Amount, Currency, check_field_precision

if TYPE_CHECKING:
    from payments.models import Payment

DEFAULT_MERCHANT = "platform"


class FailureReason:
    """The `reason` values of payments.payment-failed."""

    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    FRAUD_SUSPECTED = "fraud_suspected"
    VALIDATION_ERROR = "validation_error"
    GATEWAY_UNAVAILABLE = "gateway_unavailable"
    # The platform's own reason: a request whose processing failed for good (dead-lettered).
    PROCESSING_ERROR = "processing_error"


class PaymentMethod(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str
    token: str | None = None


class Customer(BaseModel):
    model_config = ConfigDict(extra="allow")

    email: str | None = None
    phone: str | None = None
    webhookUrl: str | None = None  # noqa: N815 - the wire name


class PaymentRequested(BaseModel):
    """payments.payment-requested; fields beyond these are kept and passed on."""

    model_config = ConfigDict(extra="allow")

    paymentId: ObjectId = Field(min_length=1, max_length=64)  # noqa: N815
    userId: str = Field(min_length=1, max_length=128)  # noqa: N815
    amount: Amount
    currency: Currency
    paymentMethod: str | PaymentMethod  # noqa: N815
    # Names the merchant's ledger account (`merchant:<merchantId>`): an id's characters only.
    merchantId: ObjectId = Field(default=DEFAULT_MERCHANT, min_length=1, max_length=128)  # noqa: N815
    customer: Customer | None = None
    timestamp: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _amount_fits_currency(self) -> PaymentRequested:
        self.amount = check_field_precision(("amount",), self.amount, self.currency)
        return self

    @property
    def method_token(self) -> str | None:
        return self.paymentMethod.token if isinstance(self.paymentMethod, PaymentMethod) else None


class LedgerPostingRefused(BaseModel):
    """ledger.transaction-failed as the payments saga reads it."""

    model_config = ConfigDict(extra="allow")

    transactionId: str = Field(min_length=1)  # noqa: N815
    reason: str
    message: str = ""


class PaymentProcessed(PaymentRequested):
    """payments.payment-processed: the request's fields plus status and processedAt."""

    status: str = Field(min_length=1)
    processedAt: str  # noqa: N815 - the wire name
    # The API client that requested the payment (absent when it came through Kafka): whose
    # notifications and webhook endpoints hear of it. Set by payments, never taken from a request.
    clientId: int | None = None  # noqa: N815 - the wire name

    @property
    def is_capture(self) -> bool:
        """A captured payment (the one status whose money moves to the merchant)."""
        from payments.models import PaymentStatus

        return self.status == PaymentStatus.CAPTURED


class PaymentFailed(PaymentRequested):
    """payments.payment-failed: the request's fields plus reason and message."""

    reason: str
    message: str = ""
    clientId: int | None = None  # noqa: N815 - as on payments.payment-processed


# --- builders of what this domain emits ---------------------------------------------------------
# The outcome events repeat the request's fields (as accepted, kept in `Payment.request`) and add
# their own; fields beyond the schema's ride along after the declared ones.


def _outcome_base(payment: Payment) -> dict[str, Any]:
    """The request's fields and the requesting client's id: the platform's own, whatever a request
    carried under that name (an extra field of the request is never believed as the client)."""
    base = {name: value for name, value in payment.request.items() if name != "clientId"}
    base["clientId"] = payment.client_id
    return base


def payment_processed_event(payment: Payment, *, processed_at: str) -> PaymentProcessed:
    """payments.payment-processed of a captured payment."""
    return PaymentProcessed.model_validate(
        {**_outcome_base(payment), "status": payment.status, "processedAt": processed_at}
    )


def payment_failed_event(payment: Payment) -> PaymentFailed:
    """payments.payment-failed of a failed payment, with its reason and message."""
    return PaymentFailed.model_validate(
        {**_outcome_base(payment), "reason": payment.failure_reason, "message": payment.failure_message}
    )


# The topics this domain records events on (bridge.consumers.producers; docs/events.md's producers).
PRODUCES = [
    topics.PAYMENT_REQUESTED,  # a client's request through the API
    topics.PAYMENT_PROCESSED,
    topics.PAYMENT_FAILED,
    topics.LEDGER_TRANSACTION_REQUESTED,  # refunds, settlements
    topics.AUDIT_PAYMENT_EVENTS,
]
