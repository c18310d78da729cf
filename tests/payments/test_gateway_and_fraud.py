"""Gateway outcomes, timeouts and fraud rules through the real stack."""

from __future__ import annotations

import uuid

import pytest
from django.test import override_settings

from bridge import topics
from bridge.codec import Envelope
from payments.models import Payment, PaymentStatus, SimulatedCharge
from payments.services.intake import payments_process_batch
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, produce, subject_is

REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
FAILED = topics.PAYMENT_FAILED.name


def send(live: Stack, data: dict) -> None:
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])


def card(token: str, **extra: str) -> dict:
    return {"type": "card", "token": token, **extra}


@pytest.mark.parametrize(
    ("method", "topic", "reason"),
    [
        (card("tok_visa"), PROCESSED, None),
        (card("tok_mastercard"), PROCESSED, None),
        ("credit_card", PROCESSED, None),
        (card("tok_chargeDeclined"), FAILED, "card_declined"),
        (card("tok_insufficientFunds"), FAILED, "insufficient_funds"),
    ],
)
def test_each_gateway_outcome(
    live: Stack, collector: Collector, method: object, topic: str, reason: str | None
) -> None:
    data = payment_request(paymentMethod=method)
    send(live, data)
    [record] = collector.wait_for(topic, subject_is(data["paymentId"]))
    assert record.json()["data"].get("reason") == reason


def test_timeout_then_success_on_retry(live: Stack, collector: Collector) -> None:
    data = payment_request(paymentMethod=card("tok_gatewayTimeoutOnce"))
    send(live, data)
    collector.wait_for(PROCESSED, subject_is(data["paymentId"]))
    charge = SimulatedCharge.objects.get(idempotency_key=data["paymentId"])
    assert (charge.attempts, charge.outcome) == (2, "captured")


def test_timeout_after_capture_never_captures_twice(live: Stack, collector: Collector) -> None:
    """The first answer is lost in a timeout although the card was charged: the retry asks with
    the same idempotency key and gets that capture back, not a second one."""
    data = payment_request(paymentMethod=card("tok_timeoutAfterCapture"))
    send(live, data)
    collector.wait_for(PROCESSED, subject_is(data["paymentId"]))
    assert SimulatedCharge.objects.filter(idempotency_key=data["paymentId"]).count() == 1
    charge = SimulatedCharge.objects.get(idempotency_key=data["paymentId"])
    assert charge.attempts == 2 and charge.outcome == "captured"
    payment = Payment.objects.get(payment_id=data["paymentId"])
    assert payment.status == PaymentStatus.CAPTURED and payment.gateway_reference == charge.reference


def test_retries_exhausted_fail_gateway_unavailable(live: Stack, collector: Collector) -> None:
    data = payment_request(paymentMethod=card("tok_gatewayTimeout"))
    send(live, data)
    [record] = collector.wait_for(FAILED, subject_is(data["paymentId"]))
    assert record.json()["data"]["reason"] == "gateway_unavailable"
    assert SimulatedCharge.objects.get(idempotency_key=data["paymentId"]).attempts == 4  # 1 + 3 retries


@pytest.mark.parametrize(
    ("overrides", "rule"),
    [
        ({"paymentMethod": card("tok_visa", country="KP")}, "blocked_country"),
        ({"customer": {"email": "x@example.com", "country": "kp"}}, "blocked_country"),
        ({"paymentMethod": card("tok_visa", bin="66666612")}, "blocked_bin"),
        ({"amount": "60000.00"}, "amount_threshold"),
    ],
)
def test_fraud_rule_hit_fails_the_payment_naming_the_rule(
    live: Stack, collector: Collector, overrides: dict, rule: str
) -> None:
    data = payment_request(**overrides)
    send(live, data)
    [record] = collector.wait_for(FAILED, subject_is(data["paymentId"]))
    assert record.json()["data"]["reason"] == "fraud_suspected"
    assert record.json()["data"]["message"].startswith(rule + ":")
    assert not SimulatedCharge.objects.filter(idempotency_key=data["paymentId"]).exists(), "never charged"


def test_fraud_rules_let_ordinary_payments_through(live: Stack, collector: Collector) -> None:
    data = payment_request(amount="49999.99", paymentMethod=card("tok_visa", country="DE", bin="424242"))
    send(live, data)
    collector.wait_for(PROCESSED, subject_is(data["paymentId"]))


def test_velocity_rule_fails_the_payment_over_the_limit(live: Stack, collector: Collector) -> None:
    first = payment_request()
    user = first["userId"]
    for _ in range(3):  # the limit in the test stack is 3 per window
        data = payment_request(userId=user)
        send(live, data)
        collector.wait_for(PROCESSED, subject_is(data["paymentId"]))
    fourth = payment_request(userId=user)
    send(live, fourth)
    [record] = collector.wait_for(FAILED, subject_is(fourth["paymentId"]))
    assert record.json()["data"]["message"].startswith("velocity:")
    other_user = payment_request()
    send(live, other_user)
    collector.wait_for(PROCESSED, subject_is(other_user["paymentId"]))


@pytest.mark.django_db
@override_settings(PAYMENTS_FRAUD_VELOCITY_MAX=3)
def test_a_batch_counts_each_users_payments_in_order_with_one_velocity_query() -> None:
    """Five requests of one user in one batch: the first three pass, the fourth and fifth are over
    the limit; another user's request in the same batch is not counted with them."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user = payment_request()["userId"]
    requests = [payment_request(userId=user) for _ in range(5)]
    requests.insert(2, payment_request())
    events = [
        Envelope(id=str(uuid.uuid4()), type=REQUESTED, source="/t", time="2026-11-30T00:00:00Z", data=data)
        for data in requests
    ]

    with CaptureQueriesContext(connection) as queries:
        outcome = payments_process_batch(events=events)

    status = {p.payment_id: p for p in outcome.decided}
    assert [status[d["paymentId"]].status for d in requests] == [
        PaymentStatus.CAPTURED,
        PaymentStatus.CAPTURED,
        PaymentStatus.CAPTURED,  # the other user's
        PaymentStatus.CAPTURED,
        PaymentStatus.FAILED,
        PaymentStatus.FAILED,
    ]
    assert status[requests[4]["paymentId"]].failure_message.startswith("velocity: user")
    velocity = [q for q in queries.captured_queries if "COUNT(*)" in q["sql"].upper()]
    assert len(velocity) == 1


@pytest.mark.django_db
def test_a_batch_of_payments_costs_the_same_statements_whatever_its_size() -> None:
    """Accepted, charged and recorded with set-based writes: ten payments cost the statements of two
    (the simulated gateway's own, on its threads' connections, aside)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def statements(n: int) -> int:
        events = [
            Envelope(
                id=str(uuid.uuid4()), type=REQUESTED, source="/t", time="2026-11-30T00:00:00Z", data=data
            )
            for data in (payment_request() for _ in range(n))
        ]
        with CaptureQueriesContext(connection) as queries:
            outcome = payments_process_batch(events=events)
        assert [p.status for p in outcome.decided] == [PaymentStatus.CAPTURED] * n
        stored = Payment.objects.filter(payment_id__in=[e.data["paymentId"] for e in events])
        assert {(p.status, bool(p.gateway_reference), p.processed_at is not None) for p in stored} == {
            (PaymentStatus.CAPTURED, True, True)
        }
        return len(queries.captured_queries)

    assert statements(2) == statements(10)
