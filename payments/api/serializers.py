"""Payments API representations, camelCase like the events (input is validated by the event schema)."""

from __future__ import annotations

from rest_framework import serializers

from core.api_fields import MoneyField
from payments.models import Payment, PaymentTransition, Refund


class PaymentTransitionSerializer(serializers.ModelSerializer):
    fromStatus = serializers.CharField(source="from_status")  # noqa: N815 - the wire name
    toStatus = serializers.CharField(source="to_status")  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815

    class Meta:
        model = PaymentTransition
        fields = ["fromStatus", "toStatus", "actor", "reason", "createdAt"]


class RefundSerializer(serializers.ModelSerializer):
    refundId = serializers.CharField(source="refund_id", read_only=True)  # noqa: N815
    paymentId = serializers.CharField(source="payment.payment_id", read_only=True)  # noqa: N815
    amount = MoneyField(currency_attr="currency")
    failureMessage = serializers.CharField(source="failure_message", read_only=True)  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)  # noqa: N815
    completedAt = serializers.DateTimeField(source="completed_at", read_only=True, allow_null=True)  # noqa: N815

    class Meta:
        model = Refund
        fields = [
            "refundId",
            "paymentId",
            "amount",
            "status",
            "reason",
            "failureMessage",
            "createdAt",
            "completedAt",
        ]


class PaymentSerializer(serializers.ModelSerializer):
    paymentId = serializers.CharField(source="payment_id")  # noqa: N815
    userId = serializers.CharField(source="user_id")  # noqa: N815
    merchantId = serializers.CharField(source="merchant_id")  # noqa: N815
    amount = MoneyField()
    failureReason = serializers.CharField(source="failure_reason")  # noqa: N815
    failureMessage = serializers.CharField(source="failure_message")  # noqa: N815
    refundedAmount = MoneyField(source="refunded_amount")  # noqa: N815
    createdAt = serializers.DateTimeField(source="created_at")  # noqa: N815
    processedAt = serializers.DateTimeField(source="processed_at", allow_null=True)  # noqa: N815

    class Meta:
        model = Payment
        fields = [
            "paymentId",
            "userId",
            "merchantId",
            "amount",
            "currency",
            "status",
            "failureReason",
            "failureMessage",
            "refundedAmount",
            "createdAt",
            "processedAt",
        ]


class PaymentDetailSerializer(PaymentSerializer):
    gatewayReference = serializers.CharField(source="gateway_reference")  # noqa: N815
    transitions = PaymentTransitionSerializer(many=True, read_only=True)
    refunds = RefundSerializer(many=True, read_only=True)

    class Meta(PaymentSerializer.Meta):
        fields = [*PaymentSerializer.Meta.fields, "gatewayReference", "request", "transitions", "refunds"]
