"""Payments: the Payment, its state machine and its recorded transitions."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models

from core.codec import EventJSONDecoder, EventJSONEncoder
from core.models import AbstractSagaStep, StatusTransition
from core.money import format_money


class PaymentStatus(models.TextChoices):
    REQUESTED = "requested"
    PROCESSING = "processing"
    CAPTURED = "captured"
    FAILED = "failed"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    SETTLED = "settled"
    REVERSED = "reversed"


# The state machine: the one place that says which status may follow which.
TRANSITIONS: dict[str, frozenset[str]] = {
    PaymentStatus.REQUESTED: frozenset({PaymentStatus.PROCESSING, PaymentStatus.FAILED}),
    PaymentStatus.PROCESSING: frozenset({PaymentStatus.CAPTURED, PaymentStatus.FAILED}),
    PaymentStatus.CAPTURED: frozenset(
        {
            PaymentStatus.PARTIALLY_REFUNDED,
            PaymentStatus.REFUNDED,
            PaymentStatus.SETTLED,
            PaymentStatus.REVERSED,
        }
    ),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset(
        {PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED, PaymentStatus.SETTLED}
    ),
    # Only a payment that failed because the gateway was unavailable may be retried (by an operator).
    PaymentStatus.FAILED: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.REFUNDED: frozenset(),
    PaymentStatus.SETTLED: frozenset(),
    PaymentStatus.REVERSED: frozenset(),
}
# Statuses in which the request has had its outcome: a redelivered request changes nothing.
DECIDED = frozenset(TRANSITIONS) - {PaymentStatus.REQUESTED, PaymentStatus.PROCESSING}


class Payment(models.Model):
    payment_id = models.CharField(max_length=64, unique=True)
    user_id = models.CharField(max_length=128, db_index=True)
    merchant_id = models.CharField(max_length=128, db_index=True)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, choices=PaymentStatus.choices, db_index=True)
    failure_reason = models.CharField(max_length=64, blank=True)
    failure_message = models.TextField(blank=True)
    gateway_reference = models.CharField(max_length=128, blank=True)
    request = models.JSONField(
        encoder=EventJSONEncoder,
        decoder=EventJSONDecoder,
        help_text="The validated payments.payment-requested data, passed on in result events.",
    )
    refunded_amount = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))
    settlement = models.ForeignKey(
        "Settlement", null=True, blank=True, on_delete=models.PROTECT, related_name="payments"
    )
    client = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        help_text="The API client that requested it; empty for requests that came through Kafka.",
    )
    correlation_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        # Refunding any payment (operators); a client may refund its own payments without it.
        permissions = [("refund_payment", "Can refund any payment")]
        constraints = [
            # A refused request is kept as it came, negative amount included; nothing else may be.
            models.CheckConstraint(
                condition=models.Q(amount__gt=0) | models.Q(status__in=["", "requested", "failed"]),
                name="payment_amount_positive_unless_refused",
            ),
            models.CheckConstraint(
                condition=models.Q(refunded_amount__gte=0) & models.Q(refunded_amount__lte=models.F("amount"))
                | models.Q(refunded_amount=0),
                name="payment_refunds_within_captured",
            ),
        ]
        indexes = [models.Index(fields=["user_id", "created_at"], name="payment_user_recent_idx")]

    def __str__(self) -> str:
        return f"{self.payment_id} {format_money(self.amount, self.currency)} {self.currency} {self.status}"

    @property
    def is_decided(self) -> bool:
        return self.status in DECIDED

    @property
    def refundable_amount(self) -> Decimal:
        return self.amount - self.refunded_amount


class PaymentTransition(StatusTransition):
    """Who moved a payment from which status to which, when and why."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="transitions")

    class Meta(StatusTransition.Meta):
        pass


class RefundStatus(models.TextChoices):
    REQUESTED = "requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Refund(models.Model):
    """A partial or full refund; its amount is reserved on the payment when it is requested."""

    refund_id = models.CharField(max_length=64, unique=True)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    status = models.CharField(max_length=16, choices=RefundStatus.choices, default=RefundStatus.REQUESTED)
    reason = models.CharField(max_length=255, blank=True)
    gateway_reference = models.CharField(max_length=128, blank=True)
    failure_message = models.TextField(blank=True)
    requested_by = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="refund_amount_positive")
        ]

    def __str__(self) -> str:
        return f"{self.refund_id} {format_money(self.amount, self.currency)} {self.status}"

    @property
    def currency(self) -> str:
        return self.payment.currency


class Settlement(models.Model):
    """Captured, unsettled payments of one merchant and currency, paid out together."""

    settlement_id = models.CharField(max_length=64, unique=True)
    merchant_id = models.CharField(max_length=128, db_index=True)
    currency = models.CharField(max_length=3)
    gross_amount = models.DecimalField(max_digits=20, decimal_places=4)
    refunded_amount = models.DecimalField(max_digits=20, decimal_places=4)
    net_amount = models.DecimalField(max_digits=20, decimal_places=4)
    payment_count = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(net_amount=models.F("gross_amount") - models.F("refunded_amount")),
                name="settlement_net_is_gross_minus_refunds",
            ),
        ]

    def __str__(self) -> str:
        net = format_money(self.net_amount, self.currency)
        return f"{self.settlement_id} {self.merchant_id} {net} {self.currency}"


class SagaStep(AbstractSagaStep):
    """One step of a payment's compensating saga (ledger refused the posting of a capture)."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="saga_steps")
    status = models.CharField(max_length=16)

    class Meta(AbstractSagaStep.Meta):
        constraints = [
            models.UniqueConstraint(fields=["payment", "step"], name="saga_step_once"),
        ]

    def __str__(self) -> str:
        return f"{self.step}: {self.status}"


class SimulatedCharge(models.Model):
    """The gateway simulator's own record of charges, by idempotency key (stands in for the PSP)."""

    idempotency_key = models.CharField(max_length=128, unique=True)
    reference = models.CharField(max_length=128)
    amount = models.DecimalField(max_digits=20, decimal_places=4)
    currency = models.CharField(max_length=3)
    outcome = models.CharField(max_length=32, blank=True, help_text="captured, or a decline reason.")
    attempts = models.PositiveIntegerField(default=0)
    refunded_amount = models.DecimalField(max_digits=20, decimal_places=4, default=Decimal(0))

    def __str__(self) -> str:
        return f"{self.reference} {self.outcome or 'pending'}"


class SimulatedRefund(models.Model):
    idempotency_key = models.CharField(max_length=128, unique=True)
    charge = models.ForeignKey(SimulatedCharge, on_delete=models.PROTECT)
    amount = models.DecimalField(max_digits=20, decimal_places=4)

    def __str__(self) -> str:
        return f"{self.idempotency_key} {self.amount}"


class LedgerReconciliation(models.Model):
    """One run comparing payments and refunds with the ledger's postings of them."""

    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField()
    payments_checked = models.PositiveIntegerField()
    refunds_checked = models.PositiveIntegerField()
    postings_checked = models.PositiveIntegerField()
    differences = models.JSONField(
        default=list,
        encoder=EventJSONEncoder,
        decoder=EventJSONDecoder,
        help_text="Every difference found: what payments expected the ledger to hold, and what it holds.",
    )
    new_differences = models.PositiveIntegerField(
        default=0, help_text="Differences the previous run did not find (the alert lists them)."
    )
    alert_id = models.CharField(max_length=64, blank=True, help_text="The compliance alert raised, if any.")

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        state = "ok" if self.ok else f"{len(self.differences)} differences"
        return f"payments against the ledger {self.started_at:%Y-%m-%d %H:%M:%S} {state}"

    @property
    def ok(self) -> bool:
        return not self.differences
