"""Notifications owns the customer-to-channels mapping for every occasion: a refund or reversal that
payments asks for reaches the same channels as a capture (push and registered endpoints too)."""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from bridge.codec import Envelope, loads
from bridge.models import OutboxEvent
from bridge.topics import NOTIFICATION_REQUESTED
from notifications import services
from notifications.events import NotificationRequested
from notifications.models import Channel, EndpointKind, Notification, WebhookEndpoint
from notifications.services import queueing
from payments.models import Payment, PaymentStatus
from payments.services.transitions import _notify_customer

pytestmark = pytest.mark.django_db


def _requested(prefix: str) -> dict[str, dict]:
    rows = OutboxEvent.objects.filter(topic=NOTIFICATION_REQUESTED.name, key__startswith=prefix)
    return {row.key: loads(bytes(row.value)) for row in rows}


def _customer(run: str) -> dict[str, str]:
    return {
        "email": f"{run}@example.com",
        "phone": "+15550001234",
        "pushToken": f"ExponentPushToken[{run}]",
        "webhookUrl": f"https://hooks.example.com/{run}",
    }


def _endpoint(url: str, event_types: list[str], *, owner: object) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        url=url, owner=owner, kind=EndpointKind.REGISTERED, event_types=event_types, secret="whsec_dGVzdA=="
    )


def test_a_reversal_reaches_push_and_the_clients_registered_endpoints() -> None:
    run = uuid.uuid4().hex[:8]
    client = get_user_model().objects.create_user(f"shop-{run}")
    wanted = _endpoint(f"https://merchant.example.com/{run}", ["payment_reversed"], owner=client)
    _endpoint(f"https://merchant.example.com/{run}/other", ["payment_captured"], owner=client)  # other events
    _endpoint(f"https://other.example.com/{run}", ["*"], owner=None)  # not the payment's client's
    payment = Payment.objects.create(
        payment_id=f"pay_{run}",
        user_id="u1",
        merchant_id="m1",
        amount=Decimal("25.00"),
        currency="USD",
        status=PaymentStatus.REVERSED,
        request={"customer": _customer(run)},
        client=client,
        correlation_id="c1",
    )

    _notify_customer(
        payment, template="payment_reversed", occasion="reversed", context={"reason": "invalid_account"}
    )

    base = f"payment:{payment.payment_id}:reversed:"
    requested = _requested(base)
    assert set(requested) == {base + k for k in ("email", "sms", "push", "webhook", f"webhook:{wanted.id}")}
    push = requested[base + "push"]["data"]
    assert (push["channel"], push["recipient"], push["template"]) == (
        "push",
        f"ExponentPushToken[{run}]",
        "payment_reversed",
    )
    assert push["context"] == {
        "paymentId": payment.payment_id,
        "amount": "25.00",
        "currency": "USD",
        "merchantId": "m1",
        "reason": "invalid_account",
    }

    # Consumed like any request: the registered endpoint's notice goes to that endpoint (its secret).
    raw = requested[base + f"webhook:{wanted.id}"]
    envelope = Envelope(
        id=raw["id"], type=raw["type"], source=raw["source"], time=raw["time"], data=raw["data"]
    )
    services.notification_request(event=envelope, request=NotificationRequested.model_validate(raw["data"]))
    notification = Notification.objects.get(notification_id=base + f"webhook:{wanted.id}")
    assert notification.channel == Channel.WEBHOOK and notification.owner_id == client.pk
    assert notification.webhook_endpoint_id == wanted.id
    assert notification.webhook_endpoint.kind == EndpointKind.REGISTERED


def test_an_endpoint_id_of_another_owner_is_not_honoured() -> None:
    run = uuid.uuid4().hex[:8]
    stranger = _endpoint(f"https://stranger.example.com/{run}", ["*"], owner=None)
    request = NotificationRequested.model_validate(
        {
            "notificationId": f"n-{run}",
            "channel": "webhook",
            "recipient": stranger.url,
            "template": "payment_refunded",
            "endpointId": str(stranger.id),
            "requestedBy": f"user:nobody-{run}",
        }
    )
    assert queueing._registered_endpoint(request, owner_id=None) is None
    assert queueing._registered_endpoint(request, owner_id=12345) is None
