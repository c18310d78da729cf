"""Reads of payments for the API and the admin: each read takes the user asking."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from payments.models import Payment

# Who sees every payment (operators, auditors); an API client sees the ones it requested.
VIEW_ALL_PERMISSION = "payments.view_payment"
# Who may refund any payment (operators); a client may refund its own.
REFUND_ANY_PERMISSION = "payments.refund_payment"


def payments_visible_to(user: Any) -> QuerySet[Payment]:
    """Every payment for holders of payments.view_payment; an API client only the ones it requested."""
    payments = Payment.objects.all()
    return payments if user.has_perm(VIEW_ALL_PERMISSION) else payments.filter(client=user)


def payment_list(
    *,
    user: Any,
    status: str | None = None,
    user_id: str | None = None,
    merchant_id: str | None = None,
    currency: str | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
) -> QuerySet[Payment]:
    """What `user` may see, filtered, newest first."""
    payments = payments_visible_to(user)
    exact = {"status": status, "user_id": user_id, "merchant_id": merchant_id, "currency": currency}
    payments = payments.filter(**{field: value for field, value in exact.items() if value})
    if created_after:
        payments = payments.filter(created_at__gte=created_after)
    if created_before:
        payments = payments.filter(created_at__lt=created_before)
    return payments.order_by("-created_at", "-id")


def may_refund(*, user: Any, payment: Payment) -> bool:
    """Operators refund any payment; a client its own; auditors and others none."""
    return user.has_perm(REFUND_ANY_PERMISSION) or (
        payment.client_id is not None and payment.client_id == user.pk
    )


def payment_client_ids(payment_ids: Iterable[str]) -> dict[str, int | None]:
    """For other domains: the API client (its user id) that requested each payment, None for a
    payment that came through Kafka; unknown ids are left out. One read for all of them."""
    return dict(
        Payment.objects.filter(payment_id__in=set(payment_ids)).values_list("payment_id", "client_id")
    )
