"""Who may do what with payments: a client its own, operators all, auditors read only.

Each test is an attack seen on the open platform, made the way the attacker made it: HTTP with
real tokens of two clients (A and B), an operator and an auditor.
"""

from __future__ import annotations

import json
import uuid

from audit.models import AuditEvent
from core.roles import AUDITORS, OPERATORS
from payments.models import Payment, PaymentStatus, Refund
from tests.conftest import Stack
from tests.payments.test_api import post_payment, wait_status
from tests.support.builders import payment_request
from tests.support.users import make_api_user, token_client
from tests.support.waiting import wait_until


def _captured_payment_of(api: object, **overrides: object) -> str:
    body = payment_request(**overrides)
    assert post_payment(api, body, key=str(uuid.uuid4())).status_code == 202
    wait_status(body["paymentId"], PaymentStatus.CAPTURED)
    return body["paymentId"]


def _refund(api: object, payment_id: str, body: dict) -> object:
    return api.post(  # type: ignore[attr-defined]
        f"/api/v1/payments/{payment_id}/refund/", json.dumps(body), content_type="application/json"
    )


def test_another_client_can_neither_see_nor_refund_a_payment(live: Stack) -> None:
    client_a = token_client(make_api_user("a"))
    client_b = token_client(make_api_user("b"))
    payment_id = _captured_payment_of(client_a)

    assert client_b.get(f"/api/v1/payments/{payment_id}/").status_code == 404
    refused = _refund(client_b, payment_id, {"amount": "1.00"})
    assert refused.status_code == 404
    assert refused["Content-Type"] == "application/problem+json"
    assert not Refund.objects.filter(payment__payment_id=payment_id).exists()

    assert _refund(client_a, payment_id, {"amount": "1.00"}).status_code == 202


def test_an_auditor_reads_every_payment_but_cannot_refund(live: Stack) -> None:
    client_a = token_client(make_api_user("a"))
    auditor = token_client(make_api_user("auditor", role=AUDITORS))
    payment_id = _captured_payment_of(client_a)

    assert auditor.get(f"/api/v1/payments/{payment_id}/").status_code == 200
    refused = _refund(auditor, payment_id, {"amount": "5.00"})
    assert refused.status_code == 403 and refused.json()["status"] == 403
    assert not Refund.objects.filter(payment__payment_id=payment_id).exists()

    operator = token_client(make_api_user("operator", role=OPERATORS))
    assert _refund(operator, payment_id, {"amount": "5.00"}).status_code == 202


def test_refund_amounts_follow_the_currency_decimals(live: Stack) -> None:
    client_a = token_client(make_api_user("a"))
    usd = _captured_payment_of(client_a)
    jpy = _captured_payment_of(client_a, amount="3000", currency="JPY")

    for payment_id, amount in ((usd, "0.001"), (usd, "0.00004"), (jpy, "1.5"), (usd, "abc")):
        answer = client_a.post(
            f"/api/v1/payments/{payment_id}/refund/",
            json.dumps({"amount": amount}),
            content_type="application/json",
        )
        assert answer.status_code == 400, (amount, answer.content)
        assert answer["Content-Type"] == "application/problem+json"
        assert "amount" in answer.json()["errors"]
    assert not Refund.objects.filter(payment__payment_id__in=[usd, jpy]).exists()
    assert {p.refunded_amount for p in Payment.objects.filter(payment_id__in=[usd, jpy])} == {0}


def test_the_client_is_the_actor_of_its_payment_also_when_the_worker_captures_it(live: Stack) -> None:
    user = make_api_user("a")
    payment_id = _captured_payment_of(token_client(user))

    records = wait_until(
        lambda: (
            list(AuditEvent.objects.filter(subject_id=payment_id, action="payment.captured"))
            and list(AuditEvent.objects.filter(subject_id=payment_id, action__startswith="payment."))
        ),
        timeout_s=60,
        what="the payment's audit records",
    )
    assert {r.action for r in records} >= {"payment.requested", "payment.processing", "payment.captured"}
    assert {r.actor for r in records} == {f"user:{user.username}"}
    captured = next(r for r in records if r.action == "payment.captured")
    assert captured.data["details"]["performedBy"] == "system:payments-worker"
