"""DRF fields shared by the domain APIs."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core import ids
from core.money import format_money
from core.problems import Problem


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


def client_chosen_id(value: str, *, field: str) -> str:
    """`value` if a client may create an object under it; 400 with the field's error otherwise (an
    id under one of the platform's own prefixes, or with characters outside core.ids')."""
    try:
        return ids.check_client_id(value)
    except ids.InvalidId as exc:
        raise Problem(400, str(exc), code="validation_error", errors={field: [str(exc)]}) from None


UNAVAILABLE_ID = "This id cannot be used; choose another, or leave it out to have one assigned."


def id_unavailable(*, field: str) -> Problem:
    """The answer to an id already taken by another client: the same words whoever holds it and
    whatever it is, so that it never confirms another client's object (ids are global today)."""
    return Problem(409, UNAVAILABLE_ID, code="id_unavailable", errors={field: [UNAVAILABLE_ID]})


def conflicting_duplicate(exc: ids.ConflictingDuplicate, *, field: str) -> Problem:
    """The answer to the client's own id sent again with other content: refused, not replayed."""
    detail = (
        f"{field} {exc.object_id} was used before with other content ({', '.join(sorted(exc.differences))})."
    )
    return Problem(422, detail, code=ids.ConflictingDuplicate.dlq_reason, errors={field: [detail]})
