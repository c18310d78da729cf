"""Builders of incoming test events in the three accepted forms."""

from __future__ import annotations

import json
import uuid
from typing import Any


def payment_request(**overrides: Any) -> dict[str, Any]:
    payment_id = overrides.pop("paymentId", f"pay_{uuid.uuid4().hex[:12]}")
    data = {
        "paymentId": payment_id,
        "userId": f"user_{uuid.uuid4().hex[:8]}",
        "amount": "99.99",
        "currency": "USD",
        "paymentMethod": {"type": "card", "token": "tok_visa"},
        "customer": {"email": "ada@example.com"},
        "timestamp": "2026-11-23T10:00:00Z",
        "metadata": {"orderId": "order_1", "description": "A book"},
    }
    data.update(overrides)
    return data


def structured(
    event_type: str, data: dict[str, Any], *, event_id: str | None = None, correlation_id: str | None = None
) -> bytes:
    event = {
        "specversion": "1.0",
        "id": event_id or str(uuid.uuid4()),
        "source": "/tests/client",
        "type": event_type,
        "time": "2026-11-23T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    if correlation_id:
        event["correlationid"] = correlation_id
    return json.dumps(event).encode()


def binary_headers(event_type: str, *, event_id: str | None = None) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", (event_id or str(uuid.uuid4())).encode()),
        ("ce_source", b"/tests/client"),
        ("ce_type", event_type.encode()),
        ("content-type", b"application/json"),
    ]


def notification_request(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "notificationId": f"ntf_{uuid.uuid4().hex[:12]}",
        "channel": "email",
        "recipient": f"{uuid.uuid4().hex[:8]}@example.com",
        "template": "payment_refunded",
        "context": {
            "paymentId": "pay_1",
            "amount": "25.00",
            "currency": "EUR",
            "reason": "requested_by_customer",
        },
    }
    data.update(overrides)
    return data


def stored_payment(**fields: Any) -> Any:
    """A Payment row written straight to the database (a test's starting state, not a request):
    captured, 25.00 USD, a fresh id, unless `fields` say otherwise."""
    from decimal import Decimal

    from payments.models import Payment, PaymentStatus

    values: dict[str, Any] = {
        "payment_id": f"pay_{uuid.uuid4().hex[:12]}",
        "user_id": "u1",
        "merchant_id": "m1",
        "amount": Decimal("25.00"),
        "currency": "USD",
        "status": PaymentStatus.CAPTURED,
        "request": {},
    }
    values.update(fields)
    return Payment.objects.create(**values)
