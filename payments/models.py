"""Payments: the Payment, its state machine and its recorded transitions."""

from __future__ import annotations

from django.db import models

from bridge.codec import EventJSONDecoder, EventJSONEncoder


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
    PaymentStatus.PARTIALLY_REFUNDED: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.FAILED: frozenset(),
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
    correlation_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # A refused request is kept as it came, negative amount included; nothing else may be.
            models.CheckConstraint(
                condition=models.Q(amount__gt=0) | models.Q(status__in=["", "requested", "failed"]),
                name="payment_amount_positive_unless_refused",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.payment_id} {self.amount} {self.currency} {self.status}"

    @property
    def is_decided(self) -> bool:
        return self.status in DECIDED


class PaymentTransition(models.Model):
    """Who moved a payment from which status to which, when and why."""

    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="transitions")
    from_status = models.CharField(max_length=32, blank=True)
    to_status = models.CharField(max_length=32)
    actor = models.CharField(max_length=128)
    reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or '-'} -> {self.to_status}"
