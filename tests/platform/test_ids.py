"""Ids over the API: the platform's own ids cannot be claimed, an id is plain ASCII, the same id
with other content is refused (422) and raises an alert, and another client's id is not revealed."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from audit.models import ComplianceAlert
from bridge import topics
from bridge.models import OutboxEvent
from core import ids
from ledger import services as ledger_services
from ledger.models import Account, Transaction
from orders.models import Order
from payments.models import Payment
from tests.ledger.support import post, topup_request, transfer_request
from tests.orders.support import make_product, order_request
from tests.support.builders import payment_request
from tests.support.users import make_api_user, token_client

pytestmark = pytest.mark.django_db

PROBLEM = "application/problem+json"
CONFLICT_RULE = "conflicting_duplicate"


def _post(api: APIClient, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    return api.post(
        path,
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=key or uuid.uuid4().hex,
    )


def _refused(answer: Any, status: int, field: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.content
    assert answer["Content-Type"] == PROBLEM
    body = answer.json()
    assert field in body["errors"], body
    return body


def _client_with_account() -> tuple[APIClient, str]:
    """A plain API client (a real token) owning a funded ledger account."""
    user = make_api_user("ids-client")
    account = f"user:{user.username}"
    ledger_services.client_account_assign(account_id=account, client=user, actor="test")
    post(topup_request(account, "100.00"))
    return token_client(user), account


def _events(topic: topics.Topic, subject: str) -> int:
    return OutboxEvent.objects.filter(topic=topic.name, key=subject).count()


# --- the grammar -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["pay_1001", "txn_0f3a", "ordpay_" + uuid.uuid4().hex, str(uuid.uuid4()), "payment:p1:captured:email"],
)
def test_the_ids_the_platform_uses_are_well_formed(value: str) -> None:
    assert ids.check_id(value) == value


@pytest.mark.parametrize(
    "value",
    ["pay/../x", "pay_1\n", "pay\u200b1", "p\u0430y_1", "pay\u202e1", " pay_1", "pay 1", "", "pay\x00"],
)
def test_ids_with_other_characters_are_refused_not_normalised(value: str) -> None:
    with pytest.raises(ids.InvalidId):
        ids.check_id(value)


@pytest.mark.parametrize(
    "value", ["refund:r1", "payment:p1", "settlement:s1", "reversal:t1", "ordpay_1", "order:o1", "user:u1"]
)
def test_every_reserved_prefix_is_reserved_in_any_case(value: str) -> None:
    assert ids.is_reserved(value) and ids.is_reserved(value.upper())
    with pytest.raises(ids.InvalidId):
        ids.check_client_id(value)


# --- reserved ids refused on every API -----------------------------------------------------------


@pytest.mark.parametrize("payment_id", ["ordpay_" + uuid.uuid4().hex, "refund:r1", "Payment:p1"])
def test_a_client_cannot_claim_a_platform_payment_id(payment_id: str) -> None:
    api = token_client(make_api_user("ids-pay"))
    answer = _post(api, "/api/v1/payments/", payment_request(paymentId=payment_id, amount="0.01"))
    _refused(answer, 400, "paymentId")
    assert not Payment.objects.filter(payment_id=payment_id).exists()


def test_a_client_cannot_post_a_refunds_transaction_id_the_refund_squat() -> None:
    """After a refund R of 50.00, a client's 0.01 transfer named `refund:R` would have been kept by
    the ledger and the refund's posting dropped as its duplicate: it is refused at the door."""
    api, account = _client_with_account()
    for transaction_id in (f"refund:{uuid.uuid4().hex}", f"payment:pay_{uuid.uuid4().hex[:12]}"):
        body = transfer_request(account, "merchant:m-squat", "0.01", transactionId=transaction_id)
        _refused(_post(api, "/api/v1/ledger/transactions/", body), 400, "transactionId")
        assert _events(topics.LEDGER_TRANSACTION_REQUESTED, transaction_id) == 0


def test_a_client_cannot_claim_a_platform_notification_id() -> None:
    user = make_api_user("ids-notify")
    user.user_permissions.add(Permission.objects.get(codename="add_notification"))
    api = token_client(user)
    for notification_id in (
        "payment:p1:captured:email",
        "order:o1:paid:email",
        "user:u1:welcome:email",
        "ordpay_1",
    ):
        body = {
            "notificationId": notification_id,
            "channel": "email",
            "recipient": "a@example.com",
            "body": "x",
        }
        _refused(api.post("/api/v1/notifications/", body, format="json"), 400, "notificationId")
        assert _events(topics.NOTIFICATION_REQUESTED, notification_id) == 0


def test_a_client_cannot_claim_a_platform_order_id() -> None:
    api = token_client(make_api_user("ids-order"))
    product = make_product(available=3)
    for order_id in ("ordpay_" + uuid.uuid4().hex[:12], "order:o1"):
        _refused(_post(api, "/api/v1/orders/", order_request(product, orderId=order_id)), 400, "orderId")
        assert not Order.objects.filter(order_id=order_id).exists()


# --- the id grammar at the API -------------------------------------------------------------------


def test_an_unroutable_payment_id_is_400_not_500() -> None:
    api = token_client(make_api_user("ids-route"))
    _refused(_post(api, "/api/v1/payments/", payment_request(paymentId="pay/../x")), 400, "paymentId")


@pytest.mark.parametrize("account", ["user:bob\n", "user:bob\u200b", "user:b\u043eb"])
def test_account_ids_with_control_format_or_look_alike_characters_are_refused(account: str) -> None:
    api, own = _client_with_account()
    _refused(
        _post(api, "/api/v1/ledger/transactions/", transfer_request(own, account, "1.00")), 400, "toAccount"
    )
    assert not Account.objects.filter(pk=account).exists()


# --- conflicting duplicates at the API -----------------------------------------------------------


def test_the_same_payment_id_with_another_amount_is_422_and_raises_an_alert() -> None:
    api = token_client(make_api_user("ids-dup"))
    body = payment_request(amount="10.00")
    assert _post(api, "/api/v1/payments/", body).status_code == 202
    # The same request again under another Idempotency-Key: the same payment, published once.
    again = _post(api, "/api/v1/payments/", body)
    assert again.status_code == 202 and again.json()["paymentId"] == body["paymentId"]
    assert _events(topics.PAYMENT_REQUESTED, body["paymentId"]) == 1

    changed = _post(api, "/api/v1/payments/", {**body, "amount": "0.01"})
    problem = _refused(changed, 422, "paymentId")
    assert problem["type"].endswith(CONFLICT_RULE)
    assert Payment.objects.get(payment_id=body["paymentId"]).amount == Decimal("10.00")
    alert = ComplianceAlert.objects.get(rule=CONFLICT_RULE, subject=f"payment:{body['paymentId']}")
    assert "amount" in alert.details["differences"]
    assert _events(topics.PAYMENT_REQUESTED, body["paymentId"]) == 1


def test_the_same_transaction_id_with_another_amount_is_422_and_raises_an_alert() -> None:
    api, account = _client_with_account()
    transaction_id = f"txn_{uuid.uuid4().hex[:12]}"
    posted = transfer_request(account, "merchant:m-dup", "5.00", transactionId=transaction_id)
    post(posted)
    assert _post(api, "/api/v1/ledger/transactions/", posted).status_code == 202  # the same: fine

    changed = _post(api, "/api/v1/ledger/transactions/", {**posted, "amount": "0.01"})
    _refused(changed, 422, "transactionId")
    assert ComplianceAlert.objects.filter(
        rule=CONFLICT_RULE, subject=f"transaction:{transaction_id}"
    ).exists()
    assert Transaction.objects.get(pk=transaction_id).entries.first().amount == Decimal("5.00")  # type: ignore[union-attr]


# --- no probing of another client's ids ----------------------------------------------------------


def test_another_clients_payment_id_is_refused_without_saying_it_exists() -> None:
    owner = token_client(make_api_user("ids-owner"))
    body = payment_request()
    assert _post(owner, "/api/v1/payments/", body).status_code == 202

    prober = token_client(make_api_user("ids-prober"))
    taken = _post(prober, "/api/v1/payments/", {**body, "amount": "1.00"})
    problem = _refused(taken, 409, "paymentId")
    text = json.dumps(problem)
    assert body["paymentId"] not in text and "exist" not in text.lower()
    assert problem["type"].endswith("id_unavailable")
    # The same words as for any other taken id: nothing tells a payment from another object.
    same = _post(prober, "/api/v1/payments/", {**body, "amount": "2.00"})
    assert same.json()["detail"] == problem["detail"]
    assert not ComplianceAlert.objects.filter(
        rule=CONFLICT_RULE, subject=f"payment:{body['paymentId']}"
    ).exists()


def test_orders_another_clients_id_is_409_and_the_own_id_with_other_lines_is_422() -> None:
    product = make_product(available=5)
    owner = token_client(make_api_user("ids-shop"))
    body = order_request(product)
    assert _post(owner, "/api/v1/orders/", body).status_code == 202
    assert _post(owner, "/api/v1/orders/", body).status_code == 202  # the same order again
    assert _events(topics.ORDER_REQUESTED, body["orderId"]) == 1

    changed = _post(
        owner, "/api/v1/orders/", order_request(product, 3, orderId=body["orderId"], userId=body["userId"])
    )
    _refused(changed, 422, "orderId")
    assert ComplianceAlert.objects.filter(rule=CONFLICT_RULE, subject=f"order:{body['orderId']}").exists()

    prober = token_client(make_api_user("ids-shop-prober"))
    taken = _refused(_post(prober, "/api/v1/orders/", body), 409, "orderId")
    assert body["orderId"] not in json.dumps(taken) and taken["type"].endswith("id_unavailable")


def test_notifications_another_clients_id_is_409_and_the_own_id_elsewhere_is_422() -> None:
    from bridge.codec import Envelope
    from core.actors import user_actor
    from notifications.events import NotificationRequested
    from notifications.services import notification_request

    def client() -> tuple[Any, APIClient]:
        user = make_api_user("ids-notifier")
        user.user_permissions.add(Permission.objects.get(codename="add_notification"))
        return user, token_client(user)

    owner, api = client()
    body = {
        "notificationId": f"n-{uuid.uuid4().hex[:8]}",
        "channel": "email",
        "recipient": "a@example.com",
        "body": "x",
    }
    assert api.post("/api/v1/notifications/", body, format="json").status_code == 202
    # The consumer queues it as the owner's (what the published request becomes).
    data = {**body, "requestedBy": user_actor(owner)}
    event = Envelope(
        id=str(uuid.uuid4()),
        type="notifications.notification-requested",
        source="/t",
        time="t",
        data=data,
        signed=True,  # the API's own published request: its requestedBy is believed
    )
    notification_request(event=event, request=NotificationRequested.model_validate(data))

    assert api.post("/api/v1/notifications/", body, format="json").status_code == 202
    moved = api.post("/api/v1/notifications/", {**body, "recipient": "b@example.com"}, format="json")
    _refused(moved, 422, "notificationId")
    assert ComplianceAlert.objects.filter(
        rule=CONFLICT_RULE, subject=f"notification:{body['notificationId']}"
    ).exists()

    _, prober = client()
    taken = _refused(prober.post("/api/v1/notifications/", body, format="json"), 409, "notificationId")
    assert body["notificationId"] not in json.dumps(taken)
