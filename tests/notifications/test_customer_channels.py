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
from tests.support.builders import stored_payment

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
    payment = stored_payment(
        payment_id=f"pay_{run}",
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


def _consume(raw: dict, *, signed: bool) -> Notification:
    envelope = Envelope(
        id=raw["id"],
        type=raw["type"],
        source=raw["source"],
        time=raw["time"],
        data=raw["data"],
        signed=signed,
    )
    services.notification_request(event=envelope, request=NotificationRequested.model_validate(raw["data"]))
    return Notification.objects.get(notification_id=raw["data"]["notificationId"])


def test_an_orders_notice_reaches_the_clients_registered_endpoints_as_the_clients_own() -> None:
    from orders.models import Order, OrderStatus
    from orders.services import _notify_customer as notify_order_customer

    run = uuid.uuid4().hex[:8]
    client = get_user_model().objects.create_user(f"shop-{run}")
    wanted = _endpoint(f"https://merchant.example.com/{run}", ["order_confirmed"], owner=client)
    _endpoint(f"https://merchant.example.com/{run}/other", ["order_shipped"], owner=client)
    _endpoint(f"https://other.example.com/{run}", ["*"], owner=None)  # the platform's: not this client's
    order = Order.objects.create(
        order_id=f"ord_{run}",
        user_id="u1",
        merchant_id="m1",
        currency="USD",
        total=Decimal("12.00"),
        status=OrderStatus.CONFIRMED,
        payment_id=f"ordpay_{run}",
        request={"customer": {"email": f"{run}@example.com"}},
        client=client,
    )

    notify_order_customer(order, template="order_confirmed", occasion="confirmed", context={})

    base = f"order:{order.order_id}:confirmed:"
    requested = _requested(base)
    assert set(requested) == {base + "email", base + f"webhook:{wanted.id}"}
    assert requested[base + "email"]["data"]["context"]["orderId"] == order.order_id

    notification = _consume(requested[base + f"webhook:{wanted.id}"], signed=True)
    assert notification.owner_id == client.pk
    assert notification.webhook_endpoint_id == wanted.id
    assert _consume(requested[base + "email"], signed=True).owner_id == client.pk


def test_a_client_id_on_an_unsigned_request_is_not_believed() -> None:
    run = uuid.uuid4().hex[:8]
    victim = get_user_model().objects.create_user(f"victim-{run}")
    endpoint = _endpoint(f"https://victim.example.com/{run}", ["*"], owner=victim)
    raw = {
        "id": f"evt-{run}",
        "type": NOTIFICATION_REQUESTED.name,
        "source": "/test",
        "time": "2026-12-05T00:00:00Z",
        "data": {
            "notificationId": f"order:ord_{run}:confirmed:webhook:{endpoint.id}",
            "channel": "webhook",
            "recipient": endpoint.url,
            "template": "order_confirmed",
            "endpointId": str(endpoint.id),
            "clientId": victim.pk,
        },
    }
    notification = _consume(raw, signed=False)  # a trusted integration's record: its own request
    assert notification.owner_id is None
    assert notification.webhook_endpoint_id != endpoint.id


def test_payment_outcome_events_carry_the_requesting_client_never_the_requests_claim() -> None:
    from payments.events import payment_failed_event, payment_processed_event

    run = uuid.uuid4().hex[:8]
    client = get_user_model().objects.create_user(f"shop-{run}")
    payment = Payment(
        payment_id=f"pay_{run}",
        status=PaymentStatus.CAPTURED,
        client=client,
        request={
            "paymentId": f"pay_{run}",
            "userId": "u1",
            "amount": Decimal("5.00"),
            "currency": "USD",
            "paymentMethod": "card",
            "clientId": 999999,  # a request's extra field of that name
        },
        failure_reason="card_declined",
    )
    processed = payment_processed_event(payment, processed_at="2026-12-05T00:00:00Z")
    assert processed.clientId == client.pk and processed.is_capture
    assert payment_failed_event(payment).clientId == client.pk
    payment.client = None
    assert payment_processed_event(payment, processed_at="2026-12-05T00:00:00Z").clientId is None


def test_a_payment_outcome_reaches_the_endpoints_of_the_client_the_event_names() -> None:
    run = uuid.uuid4().hex[:8]
    client = get_user_model().objects.create_user(f"shop-{run}")
    theirs = _endpoint(f"https://merchant.example.com/{run}", ["payment_captured"], owner=client)
    data = {
        "paymentId": f"pay_{run}",
        "userId": "u1",
        "amount": "5.00",
        "currency": "USD",
        "paymentMethod": "card",
        "merchantId": "m1",
        "status": "captured",
        "processedAt": "2026-12-05T00:00:00Z",
        "clientId": client.pk,
    }

    def outcome(signed: bool) -> Envelope:
        return Envelope(
            id=f"evt-{run}-{signed}",
            type="payments.payment-processed",
            source="/t",
            time="t",
            data=data,
            signed=signed,
        )

    # Unsigned (never admitted on this topic, but if it were): its clientId is not believed.
    assert not {n.webhook_endpoint_id for n in services.payment_outcomes_notify(events=[outcome(False)])} & {
        theirs.id
    }
    Notification.objects.filter(notification_id__startswith=f"payment:pay_{run}:").delete()
    queued = services.payment_outcomes_notify(events=[outcome(True)])
    mine = [n for n in queued if n.webhook_endpoint_id == theirs.id]
    assert len(mine) == 1 and mine[0].owner_id == client.pk
