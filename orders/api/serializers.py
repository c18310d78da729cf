"""Orders and inventory API representations, camelCase (input is validated by the event schema)."""

from __future__ import annotations

from decimal import Decimal

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.api_fields import MoneyField
from core.money import MoneyError, parse_amount
from orders.models import Order, OrderLine, OrderTransition, Product, SagaStep

# ruff: noqa: N815 - the wire names are camelCase


class OrderLineSerializer(serializers.ModelSerializer):
    productId = serializers.CharField(source="product_id")
    price = MoneyField(source="unit_price", currency_attr="currency")

    class Meta:
        model = OrderLine
        fields = ["productId", "quantity", "price"]

    def to_representation(self, instance: OrderLine) -> dict:
        instance.currency = instance.order.currency  # type: ignore[attr-defined]  # read by MoneyField
        return super().to_representation(instance)


class OrderTransitionSerializer(serializers.ModelSerializer):
    fromStatus = serializers.CharField(source="from_status")
    toStatus = serializers.CharField(source="to_status")
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = OrderTransition
        fields = ["fromStatus", "toStatus", "actor", "reason", "at"]


class SagaStepSerializer(serializers.ModelSerializer):
    at = serializers.DateTimeField(source="created_at")

    class Meta:
        model = SagaStep
        fields = ["step", "detail", "at"]


class OrderAmountsSerializer(serializers.Serializer):
    subtotal = MoneyField()
    tax = MoneyField()
    shipping = MoneyField()
    total = MoneyField()


class OrderSerializer(serializers.ModelSerializer):
    orderId = serializers.CharField(source="order_id")
    userId = serializers.CharField(source="user_id")
    merchantId = serializers.CharField(source="merchant_id")
    items = OrderLineSerializer(source="lines", many=True, read_only=True)
    totals = OrderAmountsSerializer(source="*", read_only=True)
    paymentId = serializers.CharField(source="payment_id")
    reasonMessage = serializers.CharField(source="reason_message")
    trackingNumber = serializers.CharField(source="tracking_number")
    reservationExpiresAt = serializers.DateTimeField(source="reservation_expires_at")
    createdAt = serializers.DateTimeField(source="created_at")
    updatedAt = serializers.DateTimeField(source="updated_at")

    class Meta:
        model = Order
        fields = [
            "orderId",
            "userId",
            "merchantId",
            "status",
            "reason",
            "reasonMessage",
            "currency",
            "items",
            "totals",
            "paymentId",
            "carrier",
            "trackingNumber",
            "reservationExpiresAt",
            "createdAt",
            "updatedAt",
        ]


class OrderDetailSerializer(OrderSerializer):
    history = OrderTransitionSerializer(source="transitions", many=True, read_only=True)
    sagaSteps = SagaStepSerializer(source="saga_steps", many=True, read_only=True)

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "history", "sagaSteps"]


class ProductSerializer(serializers.ModelSerializer):
    productId = serializers.CharField(source="product_id")
    price = MoneyField()
    available = serializers.IntegerField()

    class Meta:
        model = Product
        fields = ["productId", "name", "price", "currency", "available", "reserved"]


@extend_schema_field(OpenApiTypes.STR)
class AmountField(serializers.Field):
    """An amount in a request: a JSON number (parsed as Decimal) or a decimal string."""

    def to_internal_value(self, data: object) -> Decimal:
        try:
            return parse_amount(data)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ProductInputSerializer(serializers.Serializer):
    """PUT inventory/{productId}/: the product as it should be, and how many units are free to sell."""

    name = serializers.CharField(max_length=255)
    price = AmountField(help_text='A decimal string or number, e.g. "19.99"; never a float.')
    currency = serializers.CharField(min_length=3, max_length=3)
    available = serializers.IntegerField(min_value=0)
