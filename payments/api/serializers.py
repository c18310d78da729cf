"""Payments API representations (output only: input is validated by the event schema)."""

from __future__ import annotations

from rest_framework import serializers

from kafka_platform.api_fields import MoneyField
from payments.models import Payment, PaymentTransition, Refund


class PaymentTransitionSerializer(serializers.ModelSerializer):
    class Meta:
        model = PaymentTransition
        fields = ["from_status", "to_status", "actor", "reason", "created_at"]


class RefundSerializer(serializers.ModelSerializer):
    paymentId = serializers.CharField(source="payment.payment_id", read_only=True)  # noqa: N815
    amount = MoneyField(currency_attr="currency")

    class Meta:
        model = Refund
        fields = [
            "refund_id",
            "paymentId",
            "amount",
            "status",
            "reason",
            "failure_message",
            "created_at",
            "completed_at",
        ]


class PaymentSerializer(serializers.ModelSerializer):
    amount = MoneyField()
    refunded_amount = MoneyField()

    class Meta:
        model = Payment
        fields = [
            "payment_id",
            "user_id",
            "merchant_id",
            "amount",
            "currency",
            "status",
            "failure_reason",
            "failure_message",
            "refunded_amount",
            "created_at",
            "processed_at",
        ]


class PaymentDetailSerializer(PaymentSerializer):
    transitions = PaymentTransitionSerializer(many=True, read_only=True)
    refunds = RefundSerializer(many=True, read_only=True)

    class Meta(PaymentSerializer.Meta):
        fields = [*PaymentSerializer.Meta.fields, "gateway_reference", "request", "transitions", "refunds"]
