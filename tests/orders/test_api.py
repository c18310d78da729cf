"""The orders and inventory API over the real stack: placing (idempotent), who sees and cancels
which order, cancel after confirm (refund and restock), shipping, and operators' catalog PUT."""

from __future__ import annotations

import json
from typing import Any

from core.roles import AUDITORS, OPERATORS
from orders.models import OrderStatus
from payments.models import Payment, PaymentStatus
from tests.conftest import Stack
from tests.orders.support import make_product, order_request, stock, wait_sent, wait_status
from tests.support.users import make_api_user, token_client
from tests.support.waiting import wait_until


def post_order(api: Any, body: dict[str, Any], key: str | None) -> Any:
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    return api.post("/api/v1/orders/", json.dumps(body), content_type="application/json", **headers)


def test_a_client_places_an_order_sees_it_confirmed_cancels_it_and_is_refunded_and_restocked(
    live: Stack,
) -> None:
    product = make_product(available=4, price="12.50")
    client = make_api_user("shopper")
    api = token_client(client)
    body = order_request(product, quantity=2)
    del body["userId"]  # the client's own username stands in

    assert post_order(api, body, key=None).status_code == 400
    response = post_order(api, body, key="order-1")
    assert response.status_code == 202, response.json()
    assert response["Location"] == f"/api/v1/orders/{body['orderId']}/"
    assert response.json()["status"] == "pending" and response.json()["totals"]["total"] == "25.00"
    replay = post_order(api, body, key="order-1")
    assert replay.status_code == 202 and replay["Idempotent-Replayed"] == "true"

    wait_status(body["orderId"], OrderStatus.CONFIRMED)
    detail = api.get(response["Location"]).json()
    assert detail["userId"] == client.username and detail["items"][0]["price"] == "12.50"
    assert [h["toStatus"] for h in detail["history"]] == ["pending", "reserved", "paid", "confirmed"]
    assert "payment_captured" in [s["step"] for s in detail["sagaSteps"]]
    assert [o["orderId"] for o in api.get("/api/v1/orders/").json()["results"]] == [body["orderId"]]
    assert stock(product) == (2, 0)

    cancelled = api.post(f"/api/v1/orders/{body['orderId']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["reason"] == "cancelled_by_customer"
    assert stock(product) == (4, 0)
    payment_id = cancelled.json()["paymentId"]
    wait_until(
        lambda: Payment.objects.filter(payment_id=payment_id, status=PaymentStatus.REFUNDED).exists(),
        what="the order's payment refunded",
    )
    assert wait_sent(f"order:{body['orderId']}:cancelled:email")
    again = api.post(f"/api/v1/orders/{body['orderId']}/cancel/")
    assert again.status_code == 409 and again["Content-Type"] == "application/problem+json"


def test_a_client_cannot_see_or_cancel_another_clients_order_and_roles_decide_the_rest(live: Stack) -> None:
    product = make_product(available=5)
    owner = token_client(make_api_user("owner"))
    body = order_request(product)
    assert post_order(owner, body, key="k").status_code == 202
    wait_status(body["orderId"], OrderStatus.CONFIRMED)
    url = f"/api/v1/orders/{body['orderId']}/"

    stranger = token_client(make_api_user("stranger"))
    assert stranger.get(url).status_code == 404
    assert stranger.post(url + "cancel/").status_code == 404
    assert stranger.get("/api/v1/orders/").json()["results"] == []

    auditor = token_client(make_api_user("auditor", role=AUDITORS))
    assert auditor.get(url).status_code == 200
    assert auditor.post(url + "cancel/").status_code == 403
    assert owner.post(url + "ship/").status_code == 403

    operator = token_client(make_api_user("operator", role=OPERATORS))
    shipped = operator.post(url + "ship/")
    assert shipped.status_code == 200 and shipped.json()["status"] == "shipped"
    assert shipped.json()["trackingNumber"].startswith("SIM")
    assert wait_sent(f"order:{body['orderId']}:shipped:email")
    # Once it left the warehouse it can no longer be cancelled.
    assert owner.post(url + "cancel/").status_code == 409
    assert operator.post(url + "deliver/").json()["status"] == "delivered"


def test_the_catalog_is_read_by_everyone_and_set_by_operators(live: Stack) -> None:
    client = token_client(make_api_user("reader"))
    operator = token_client(make_api_user("stock-keeper", role=OPERATORS))
    auditor = token_client(make_api_user("looker", role=AUDITORS))
    product_id = f"sku_put_{make_api_user('x').pk}"
    body = {"name": "Lamp", "price": 19.99, "currency": "EUR", "available": 7}

    put = operator.put(f"/api/v1/inventory/{product_id}/", json.dumps(body), content_type="application/json")
    assert put.status_code == 201, put.json()
    assert put.json() == {
        "productId": product_id,
        "name": "Lamp",
        "price": "19.99",
        "currency": "EUR",
        "available": 7,
        "reserved": 0,
    }
    changed = operator.put(
        f"/api/v1/inventory/{product_id}/",
        json.dumps({**body, "available": 3}),
        content_type="application/json",
    )
    assert changed.status_code == 200 and changed.json()["available"] == 3
    assert client.get(f"/api/v1/inventory/{product_id}/").json()["available"] == 3
    listed = client.get("/api/v1/inventory/").json()
    assert listed["count"] >= 1 and set(listed["results"][0]) == set(put.json())

    for refused in (client, auditor):
        answer = refused.put(
            f"/api/v1/inventory/{product_id}/", json.dumps(body), content_type="application/json"
        )
        assert answer.status_code == 403
    bad = operator.put(
        f"/api/v1/inventory/{product_id}/",
        json.dumps({**body, "price": "19.999"}),
        content_type="application/json",
    )
    assert bad.status_code == 400 and bad["Content-Type"] == "application/problem+json"


def test_an_order_price_finer_than_its_currency_is_filed_under_that_line(live: Stack) -> None:
    product = make_product(available=4, price="12.50")
    api = token_client(make_api_user("precise-shopper"))
    body = order_request(product, quantity=1)
    del body["userId"]
    body["items"][0]["price"] = "12.501"
    body["totals"] = {"tax": "0.001"}
    response = post_order(api, body, key="precision-1")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "items.0.price": ["amount 12.501 has more decimal places than USD allows (2)"]
    }
