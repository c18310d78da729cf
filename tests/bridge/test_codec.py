"""The codec and the routing table's validation, without a broker: pure logic."""

from __future__ import annotations

from decimal import Decimal

import pytest

from bridge import codec, routing, topics
from bridge.codec import IncomingMessage, PoisonMessage
from tests.support.builders import binary_headers, payment_request, structured

TOPIC = topics.PAYMENT_REQUESTED.name


def message(
    value: bytes, headers: list[tuple[str, bytes]] | None = None, key: bytes | None = b"k"
) -> IncomingMessage:
    return IncomingMessage(TOPIC, 3, 41, key, value, headers or [])


def decode_valid(msg: IncomingMessage) -> codec.Envelope:
    envelope, _ = routing.validate(codec.decode(msg))
    return envelope


def test_bare_json_number_amount_becomes_exact_decimal_string() -> None:
    raw = b'{"paymentId":"p1","userId":"u","amount":99.99,"currency":"USD","paymentMethod":"credit_card"}'
    envelope = decode_valid(message(raw))
    assert envelope.id == "p1"  # the payload's own id field
    assert envelope.type == TOPIC
    assert envelope.data["amount"] == "99.99"
    assert envelope.data["merchantId"] == "platform"


def test_bare_json_without_id_falls_back_to_topic_partition_offset() -> None:
    envelope = codec.decode(message(b'{"hello": 1}'))
    assert envelope.id == f"{TOPIC}:3:41"


def test_structured_cloudevent_keeps_id_and_correlation() -> None:
    raw = structured(TOPIC, payment_request(paymentId="p2"), event_id="evt-1", correlation_id="corr-9")
    envelope = decode_valid(message(raw, [("content-type", b"application/cloudevents+json")]))
    assert (envelope.id, envelope.correlation_id, envelope.data["paymentId"]) == ("evt-1", "corr-9", "p2")


def test_binary_mode_reads_ce_headers() -> None:
    raw = codec.dumps(payment_request(paymentId="p3"))
    envelope = decode_valid(message(raw, binary_headers(TOPIC, event_id="evt-b")))
    assert (envelope.id, envelope.type, envelope.data["paymentId"]) == ("evt-b", TOPIC, "p3")


def test_extra_fields_are_kept_and_numbers_stay_exact() -> None:
    raw = (
        b'{"paymentId":"p4","userId":"u","amount":"1","currency":"JPY","paymentMethod":"x","risk":0.1000001}'
    )
    envelope = decode_valid(message(raw))
    assert envelope.data["risk"] == Decimal("0.1000001")
    assert b'"risk":0.1000001' in codec.dumps(envelope.data)
    assert envelope.data["amount"] == "1"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b"", "invalid_json"),
        (
            b'{"paymentId":"p","userId":"u","amount":"10.001","currency":"USD","paymentMethod":"c"}',
            "schema_violation",
        ),
        (
            b'{"paymentId":"p","userId":"u","amount":"abc","currency":"USD","paymentMethod":"c"}',
            "schema_violation",
        ),
        (
            b'{"paymentId":"p","userId":"u","amount":"1","currency":"usd","paymentMethod":"c"}',
            "schema_violation",
        ),
        (b'{"paymentId":"p","userId":"u","amount":"5","currency":"USD"}', "schema_violation"),
        (
            b'{"paymentId":7,"userId":"u","amount":"5","currency":"USD","paymentMethod":"c"}',
            "schema_violation",
        ),
        (b'{"specversion":"1.0","id":"x","source":"/s","type":"nobody.listens","data":{}}', "unknown_type"),
        (b'{"specversion":"0.3","id":"x","source":"/s","type":"t"}', "invalid_envelope"),
    ],
)
def test_poison_is_refused_with_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage) as caught:
        decode_valid(message(value))
    assert caught.value.reason == reason


def test_amount_with_more_places_than_the_currency_is_refused_per_currency() -> None:
    ok = b'{"paymentId":"p","userId":"u","amount":"1.005","currency":"BHD","paymentMethod":"c"}'
    assert decode_valid(message(ok)).data["amount"] == "1.005"
    jpy = b'{"paymentId":"p","userId":"u","amount":"1.5","currency":"JPY","paymentMethod":"c"}'
    with pytest.raises(PoisonMessage):
        decode_valid(message(jpy))


def test_float_amount_is_never_accepted_from_code() -> None:
    from payments.events import PaymentRequested

    with pytest.raises(ValueError, match="decimal"):
        PaymentRequested.model_validate({**payment_request(), "amount": 99.99})


def test_oversized_message_is_poison_and_producing_one_is_refused() -> None:
    big = b'{"x":"' + b"a" * (topics.MAX_EVENT_BYTES + 1) + b'"}'
    with pytest.raises(PoisonMessage) as caught:
        codec.decode(message(big))
    assert caught.value.reason == "too_large"
    event = codec.build_event(
        event_type=TOPIC, domain="payments", subject="s", data={"x": "a" * topics.MAX_EVENT_BYTES}
    )
    with pytest.raises(codec.EventTooLarge, match="limit"):
        codec.encode_event(event)


def test_outgoing_event_is_a_structured_cloudevent() -> None:
    event = codec.build_event(
        event_type=topics.PAYMENT_PROCESSED.name,
        domain="payments",
        subject="p9",
        data={"amount": "1.00"},
        correlation_id="c1",
    )
    value, headers = codec.encode_event(event)
    decoded = codec.loads(value)
    assert dict(headers)["content-type"] == b"application/cloudevents+json"
    assert decoded["specversion"] == "1.0" and decoded["source"] == "/kafka-platform/payments"
    assert decoded["type"] == "payments.payment-processed" and decoded["subject"] == "p9"
    assert decoded["correlationid"] == "c1" and decoded["datacontenttype"] == "application/json"
    assert decoded["time"].endswith("Z")


def test_catalog_names_are_unique_and_audit_pattern_excludes_outputs() -> None:
    names = [t.name for t in topics.CATALOG]
    assert len(names) == len(set(names))
    assert topics.is_audit_topic("audit.payment-events")
    assert topics.is_audit_topic("audit.fx-events")
    assert not topics.is_audit_topic("audit.dlq")
    assert not topics.is_audit_topic("audit.compliance-alerts")
