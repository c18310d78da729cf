"""Reads of payments for the API and the admin."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from kafka_platform.roles import OPERATORS
from payments.models import Payment


def is_operator(user: Any) -> bool:
    return bool(user.is_staff or user.groups.filter(name=OPERATORS).exists())


def payments_visible_to(user: Any) -> QuerySet[Payment]:
    """Operators (and staff) see every payment; an API client only the ones it requested."""
    payments = Payment.objects.all()
    return payments if is_operator(user) else payments.filter(client=user)
