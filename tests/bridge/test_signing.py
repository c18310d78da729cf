"""The platform signature and the admission policy, as pure functions (no broker needed)."""

from __future__ import annotations

import json
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from bridge import signing, topics
from bridge.admission import admit, trusted_inputs
from bridge.codec import IncomingMessage, PoisonMessage, decode
from tests.support.signing import sign

TOPUP = topics.LEDGER_TRANSACTION_REQUESTED.name
REQUESTED = topics.PAYMENT_REQUESTED.name


def event(event_type: str, *, actor: str | None = "user:ops") -> bytes:
    body: dict[str, object] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/kafka-platform/ledger",
        "type": event_type,
        "data": {"transactionId": "txn_1"},
    }
    if actor:
        body["actor"] = actor
    return json.dumps(body).encode()


def message(topic: str, value: bytes, headers: list[tuple[str, bytes]] | None = None) -> IncomingMessage:
    return IncomingMessage(topic, 0, 7, b"k", value, headers or [])


def test_a_signed_record_is_signed_and_its_actor_believed() -> None:
    value = event(TOPUP)
    envelope = decode(message(TOPUP, value, sign(TOPUP, value)))
    assert envelope.signed and envelope.actor == "user:ops"
    assert admit(message(TOPUP, value, sign(TOPUP, value)), envelope) is envelope


def test_the_header_names_the_key_by_an_id_derived_from_it() -> None:
    value = event(TOPUP)
    [(_, header)] = [h for h in sign(TOPUP, value) if h[0] == signing.SIGNATURE_HEADER]
    version, kid, mac = header.decode().split(",")
    assert (version, kid) == ("v1", signing.key_id("dev-only-platform-event-key"))
    assert len(kid) == 8 and mac


def test_an_unsigned_record_acts_as_the_integration_of_its_topic() -> None:
    envelope = decode(message(REQUESTED, event(REQUESTED)))
    assert not envelope.signed and envelope.actor == f"kafka:{REQUESTED}"


@pytest.mark.parametrize(
    "headers_of",
    [
        lambda value: sign(REQUESTED, value),  # signed for another topic
        lambda value: sign(TOPUP, value + b" "),  # the value changed after signing
        lambda value: [(signing.SIGNATURE_HEADER, b"v1,00000000,AAAA")],  # an unknown key
        lambda value: [(signing.SIGNATURE_HEADER, b"v1,garbage")],
        lambda value: sign(TOPUP, value) + sign(TOPUP, value),  # twice: which would count?
    ],
    ids=["other-topic", "altered", "unknown-key", "malformed", "repeated"],
)
def test_a_signature_that_does_not_verify_is_unauthenticated(headers_of: object) -> None:
    value = event(TOPUP)
    headers = headers_of(value)  # type: ignore[operator]
    envelope = decode(message(TOPUP, value, headers))
    assert not envelope.signed and envelope.actor == f"kafka:{TOPUP}"
    with pytest.raises(PoisonMessage) as refused:
        admit(message(TOPUP, value, headers), envelope)
    assert refused.value.reason == "unauthenticated"


def test_a_bad_signature_is_refused_on_an_open_topic_too() -> None:
    value = event(REQUESTED)
    headers = sign(TOPUP, value)
    with pytest.raises(PoisonMessage) as refused:
        admit(message(REQUESTED, value, headers), decode(message(REQUESTED, value, headers)))
    assert refused.value.reason == "unauthenticated"


def test_a_record_signed_with_the_previous_key_verifies_after_a_rotation() -> None:
    value = event(TOPUP)
    headers = sign(TOPUP, value)  # the development key
    with override_settings(
        PLATFORM_EVENT_KEY="new-key", PLATFORM_EVENT_KEY_PREVIOUS="dev-only-platform-event-key"
    ):
        assert decode(message(TOPUP, value, headers)).signed
    with override_settings(PLATFORM_EVENT_KEY="new-key", PLATFORM_EVENT_KEY_PREVIOUS=""):
        assert not decode(message(TOPUP, value, headers)).signed


def test_a_type_other_than_the_topic_is_a_schema_violation_even_when_signed() -> None:
    value = event(topics.PAYMENT_PROCESSED.name)
    headers = sign(REQUESTED, value)
    with pytest.raises(PoisonMessage) as refused:
        admit(message(REQUESTED, value, headers), decode(message(REQUESTED, value, headers)))
    assert refused.value.reason == "schema_violation"


@pytest.mark.parametrize(
    ("topic", "trusted", "admitted"),
    [
        (REQUESTED, [], True),
        (topics.USER_LOGIN.name, [], True),
        (TOPUP, [], False),
        (TOPUP, [TOPUP], True),
        (topics.NOTIFICATION_REQUESTED.name, [TOPUP], False),
        (topics.PAYMENT_PROCESSED.name, [], False),
        (topics.AUDIT_PAYMENT_EVENTS.name, [], False),
        ("audit.fx-events", [], False),  # an audit topic joined later by pattern
        (topics.LEDGER_BALANCE_UPDATED.name, [], False),
    ],
)
def test_unsigned_records_by_topic(topic: str, trusted: list[str], admitted: bool) -> None:
    value = event(topic)
    with override_settings(KAFKA_TRUSTED_INPUTS=trusted):
        envelope = decode(message(topic, value))
        if admitted:
            assert admit(message(topic, value), envelope).actor == f"kafka:{topic}"
        else:
            with pytest.raises(PoisonMessage) as refused:
                admit(message(topic, value), envelope)
            assert refused.value.reason == "unauthenticated"


def test_trusted_inputs_may_name_only_gated_topics() -> None:
    with override_settings(KAFKA_TRUSTED_INPUTS=[topics.PAYMENT_PROCESSED.name]):
        with pytest.raises(ImproperlyConfigured, match="payments.payment-processed"):
            trusted_inputs()
    assert topics.GATED_INPUTS.isdisjoint(topics.OPEN_INPUTS)
    assert topics.PAYMENT_PROCESSED.name in topics.PLATFORM_OUTPUTS
