"""The payments API over the real stack: idempotent requests, visibility, refunds."""

from __future__ import annotations

import json
import threading
import time
import uuid

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

from bridge import topics
from core.roles import OPERATORS
from payments.models import Payment, PaymentStatus, Refund, RefundStatus
from tests.conftest import Stack
from tests.support.builders import payment_request
from tests.support.kafka import Collector, subject_is


def client_for(name: str, *, operator: bool = False) -> APIClient:
    user = get_user_model().objects.create_user(f"{name}-{uuid.uuid4().hex[:6]}")
    if operator:
        user.groups.add(Group.objects.get_or_create(name=OPERATORS)[0])
    api = APIClient()
    api.force_authenticate(user)
    return api


def post_payment(api: APIClient, body: dict, key: str | None = None) -> object:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post("/api/v1/payments/", json.dumps(body), content_type="application/json", **headers)


def wait_status(payment_id: str, status: str, timeout_s: float = 60) -> Payment:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        payment = Payment.objects.filter(payment_id=payment_id).first()
        if payment and payment.status == status:
            return payment
        time.sleep(0.2)
    raise AssertionError(f"{payment_id} never reached {status}: {payment and payment.status}")


def test_post_without_key_is_400(live: Stack) -> None:
    response = post_payment(client_for("c1"), payment_request())
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"]


def test_post_answers_202_publishes_and_the_payment_is_captured(live: Stack, collector: Collector) -> None:
    api = client_for("c2")
    body = payment_request()
    body["amount"] = 12.34  # a JSON number: parsed as Decimal, never float
    response = post_payment(api, body, key="k-1")
    assert response.status_code == 202
    assert response["Location"] == f"/api/v1/payments/{body['paymentId']}/"
    assert response.json()["status"] == "requested" and response.json()["amount"] == "12.34"

    [requested] = collector.wait_for(topics.PAYMENT_REQUESTED.name, subject_is(body["paymentId"]))
    assert requested.json()["data"]["amount"] == "12.34"
    collector.wait_for(topics.PAYMENT_PROCESSED.name, subject_is(body["paymentId"]))
    detail = api.get(response["Location"]).json()
    assert detail["status"] == "captured"
    assert [t["toStatus"] for t in detail["transitions"]] == ["requested", "processing", "captured"]


def test_same_key_replays_different_body_is_422(live: Stack) -> None:
    api = client_for("c3")
    body = payment_request()
    first = post_payment(api, body, key="k-2")
    again = post_payment(api, body, key="k-2")
    assert again.status_code == 202 and again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    changed = post_payment(api, {**body, "amount": "1.00"}, key="k-2")
    assert changed.status_code == 422
    assert Payment.objects.filter(payment_id=body["paymentId"]).count() == 1


def test_two_concurrent_requests_with_one_key_give_one_payment(live: Stack) -> None:
    api = client_for("c4")
    body = payment_request()
    codes: list[int] = []
    barrier = threading.Barrier(2)

    def request() -> None:
        barrier.wait()
        codes.append(post_payment(api, body, key="k-3").status_code)

    threads = [threading.Thread(target=request) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 202 in codes and set(codes) <= {202, 409}
    assert Payment.objects.filter(payment_id=body["paymentId"]).count() == 1


def test_invalid_body_is_400_with_field_errors(live: Stack) -> None:
    response = post_payment(client_for("c5"), {"amount": "10.001", "currency": "USD"}, key="k-4")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 400 and problem["title"] == "Bad Request"
    assert {"userId", "paymentMethod"} <= set(problem["errors"])


def test_money_finer_than_its_currency_is_filed_under_the_field_the_client_sent(live: Stack) -> None:
    """The precision rule needs the currency, so it runs over the whole body; its error still names
    `amount`, in a plain sentence (no validator prefix)."""
    response = post_payment(client_for("c5b"), payment_request(amount="10.001"), key="k-4b")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "amount": ["amount 10.001 has more decimal places than USD allows (2)"]
    }


def test_clients_see_their_own_payments_operators_see_all(live: Stack) -> None:
    alice, bob, operator = client_for("alice"), client_for("bob"), client_for("ops", operator=True)
    mine = payment_request()
    post_payment(alice, mine, key="k-5")
    post_payment(bob, payment_request(), key="k-5")
    assert [p["paymentId"] for p in alice.get("/api/v1/payments/").json()["results"]] == [mine["paymentId"]]
    assert bob.get(f"/api/v1/payments/{mine['paymentId']}/").status_code == 404
    seen_by_operator = {p["paymentId"] for p in operator.get("/api/v1/payments/").json()["results"]}
    assert mine["paymentId"] in seen_by_operator and len(seen_by_operator) >= 2
    filtered = operator.get("/api/v1/payments/", {"user": mine["userId"]}).json()
    assert [p["paymentId"] for p in filtered["results"]] == [mine["paymentId"]]


def test_partial_then_full_refund_and_never_more_than_captured(live: Stack, collector: Collector) -> None:
    api = client_for("c6", operator=True)
    body = payment_request(amount="99.99")
    post_payment(api, body, key=str(uuid.uuid4()))
    wait_status(body["paymentId"], PaymentStatus.CAPTURED)
    url = f"/api/v1/payments/{body['paymentId']}/refund/"

    partial = api.post(url, {"amount": "40.00", "reason": "damaged"}, format="json")
    assert partial.status_code == 202
    wait_status(body["paymentId"], PaymentStatus.PARTIALLY_REFUNDED)
    too_much = api.post(url, {"amount": "60.00"}, format="json")
    assert too_much.status_code == 422 and "59.99" in too_much.json()["detail"]
    rest = api.post(url, {}, format="json")
    assert rest.status_code == 202 and rest.json()["amount"] == "59.99"
    payment = wait_status(body["paymentId"], PaymentStatus.REFUNDED)
    assert payment.refunded_amount == payment.amount
    assert list(Refund.objects.filter(payment=payment).values_list("status", flat=True)) == [
        RefundStatus.SUCCEEDED,
        RefundStatus.SUCCEEDED,
    ]

    postings = collector.wait_for(
        topics.LEDGER_TRANSACTION_REQUESTED.name,
        lambda r: (r.json()["data"].get("metadata") or {}).get("paymentId") == body["paymentId"],
        count=2,
    )
    data = sorted((r.json()["data"] for r in postings), key=lambda d: d["amount"])
    assert [(d["kind"], d["amount"], d["fromAccount"], d["toAccount"]) for d in data] == [
        ("refund", "40.00", "merchant:platform", "external:psp"),
        ("refund", "59.99", "merchant:platform", "external:psp"),
    ]
    notices = collector.wait_for(
        topics.NOTIFICATION_REQUESTED.name,
        lambda r: (r.json()["data"].get("context") or {}).get("paymentId") == body["paymentId"],
        count=2,
    )
    assert {n.json()["data"]["template"] for n in notices} == {"payment_refunded"}
    assert {n.json()["data"]["recipient"] for n in notices} == {"ada@example.com"}
    assert api.post(url, {"amount": "0.01"}, format="json").status_code == 422
