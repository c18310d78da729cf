"""DRF fields shared by the domain APIs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core.money import format_money


@extend_schema_field(OpenApiTypes.STR)
class MoneyField(serializers.Field):
    """A read-only amount shown with its currency's decimal places ("59.99", JPY "1500")."""

    def __init__(self, currency_attr: str = "currency", **kwargs: Any) -> None:
        kwargs["read_only"] = True
        super().__init__(**kwargs)
        self.currency_attr = currency_attr

    def get_attribute(self, instance: Any) -> tuple[Decimal, str]:
        return cast(Decimal, super().get_attribute(instance)), getattr(instance, self.currency_attr)

    def to_representation(self, value: tuple[Decimal, str]) -> str:
        amount, currency = value
        return format_money(amount, currency)
