"""A payment request through the real bridge, Celery worker, PostgreSQL and Kafka broker."""

from __future__ import annotations

import uuid

from audit.models import AuditEvent
from bridge import topics
from bridge.models import InboxEvent, OutboxEvent
from payments.models import Payment, PaymentStatus
from payments.services.transitions import INBOX_CONSUMER as PAYMENTS_INBOX
from tests.conftest import Stack
from tests.support.builders import binary_headers, payment_request, structured
from tests.support.inbox import redelivery_refused
from tests.support.kafka import Collector, produce, subject_is
from tests.support.waiting import wait_until

REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
FAILED = topics.PAYMENT_FAILED.name


def test_structured_payment_is_captured_with_result_and_audit_events(
    live: Stack, collector: Collector
) -> None:
    data = payment_request(metadata={"orderId": "o-77"})
    produce(
        live.bootstrap,
        REQUESTED,
        structured(REQUESTED, data, correlation_id="corr-1"),
        key=data["paymentId"],
        headers=[("content-type", b"application/cloudevents+json")],
    )

    [record] = collector.wait_for(PROCESSED, subject_is(data["paymentId"]))
    event = record.json()
    assert record.headers["content-type"] == b"application/cloudevents+json"
    assert event["type"] == PROCESSED and event["source"] == "/kafka-platform/payments"
    assert event["correlationid"] == "corr-1"
    assert event["data"]["status"] == "captured" and event["data"]["amount"] == "99.99"
    assert event["data"]["metadata"] == {"orderId": "o-77"} and "processedAt" in event["data"]

    payment = Payment.objects.get(payment_id=data["paymentId"])
    assert payment.status == PaymentStatus.CAPTURED
    assert [t.to_status for t in payment.transitions.all()] == ["requested", "processing", "captured"]
    collector.wait_for(topics.AUDIT_PAYMENT_EVENTS.name, subject_is(data["paymentId"]), count=3)
    stored = wait_until(lambda: AuditEvent.objects.filter(subject_id=data["paymentId"]).count() == 3)
    assert stored, "the audit worker stored the payment's three audit events"


def test_bare_json_sample_amount_number_comes_out_as_string(live: Stack, collector: Collector) -> None:
    payment_id = f"pay_bare_{uuid.uuid4().hex[:8]}"
    raw = (
        b'{"paymentId":"%s","userId":"user_1","amount":99.99,"currency":"USD",'
        b'"paymentMethod":"credit_card","timestamp":"2026-11-23T10:00:00Z"}' % payment_id.encode()
    )
    produce(live.bootstrap, REQUESTED, raw, key=payment_id)
    [record] = collector.wait_for(PROCESSED, subject_is(payment_id))
    assert record.value is not None and b'"amount":"99.99"' in record.value
    assert Payment.objects.get(payment_id=payment_id).amount == Payment._meta.get_field("amount").to_python(
        "99.99"
    )


def test_binary_mode_payment_is_captured(live: Stack, collector: Collector) -> None:
    data = payment_request(amount=1500, currency="JPY")
    produce(
        live.bootstrap,
        REQUESTED,
        structured_data(data),
        key=data["paymentId"],
        headers=binary_headers(REQUESTED, event_id="bin-" + data["paymentId"]),
    )
    [record] = collector.wait_for(PROCESSED, subject_is(data["paymentId"]))
    assert record.json()["data"]["amount"] == "1500"


def test_declined_card_fails_with_reason(live: Stack, collector: Collector) -> None:
    data = payment_request(paymentMethod={"type": "card", "token": "tok_chargeDeclined"})
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])
    [record] = collector.wait_for(FAILED, subject_is(data["paymentId"]))
    assert record.json()["data"]["reason"] == "card_declined"
    assert Payment.objects.get(payment_id=data["paymentId"]).status == PaymentStatus.FAILED
    assert not collector.matching(PROCESSED, subject_is(data["paymentId"]))


def test_business_rule_refusal_is_a_failed_event_not_a_dead_letter(live: Stack, collector: Collector) -> None:
    data = payment_request(amount="-5.00")
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])
    [record] = collector.wait_for(FAILED, subject_is(data["paymentId"]))
    assert record.json()["data"]["reason"] == "validation_error"
    assert "positive" in record.json()["data"]["message"]


def test_gateway_timeout_is_retried_then_fails_gateway_unavailable(live: Stack, collector: Collector) -> None:
    data = payment_request(paymentMethod={"type": "card", "token": "tok_gatewayTimeout"})
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])
    [record] = collector.wait_for(FAILED, subject_is(data["paymentId"]))
    assert record.json()["data"]["reason"] == "gateway_unavailable"
    assert "after 4 attempts" in record.json()["data"]["message"]


def test_same_event_delivered_twice_has_its_effect_once(live: Stack, collector: Collector) -> None:
    data = payment_request()
    event_id = "evt-dup-" + data["paymentId"]
    raw = structured(REQUESTED, data, event_id=event_id)
    produce(live.bootstrap, REQUESTED, raw, key=data["paymentId"])
    collector.wait_for(PROCESSED, subject_is(data["paymentId"]))

    # The first delivery is decided and its event id in the inbox: now the same event again, and
    # a different event for the same paymentId (a repeated request).
    since = live.worker.log_size()
    produce(live.bootstrap, REQUESTED, raw, key=data["paymentId"])
    repeat_id = "evt-repeat-" + data["paymentId"]
    produce(live.bootstrap, REQUESTED, structured(REQUESTED, data, event_id=repeat_id), key=data["paymentId"])
    # Proof that both copies were consumed, before asserting that neither had an effect: the
    # inbox refused the redelivery, and recorded the repeated request as handled.
    wait_until(
        redelivery_refused(live.worker, consumer=PAYMENTS_INBOX, event_id=event_id, since=since),
        what=f"the worker refused the redelivered {event_id}",
    )
    wait_until(
        lambda: InboxEvent.objects.filter(consumer=PAYMENTS_INBOX, event_id=repeat_id).exists(),
        what=f"the worker handled the repeated request {repeat_id}",
    )

    assert Payment.objects.filter(payment_id=data["paymentId"]).count() == 1
    assert Payment.objects.get(payment_id=data["paymentId"]).transitions.count() == 3
    # What would be published is written with the effect, in its transaction: one result.
    assert OutboxEvent.objects.filter(topic=PROCESSED, key=data["paymentId"]).count() == 1
    collector.poll()
    assert len(collector.matching(PROCESSED, subject_is(data["paymentId"]))) == 1


def structured_data(data: dict[str, object]) -> bytes:
    from bridge.codec import dumps

    return dumps(data)
