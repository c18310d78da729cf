"""Who may produce what on Kafka: forged records are refused, unsigned ones act as their integration.

Each record goes through the real bridge, Celery worker, PostgreSQL and the embedded broker; the
records are produced with kafka-python as an outside producer would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest
from django.conf import settings

from audit.models import AuditEvent
from bridge import signing, topics
from bridge.deadletters import REPLAYED, replay
from bridge.models import DeadLetter
from bridge.signing import SIGNATURE_HEADER
from ledger.models import Transaction
from notifications.models import Notification
from payments.models import Payment, PaymentTransition
from tests.conftest import Stack
from tests.ledger.support import balance, topup_request, transfer_request
from tests.support.builders import payment_request
from tests.support.kafka import Collector, Record, produce, subject_is
from tests.support.signing import sign
from tests.support.users import make_api_user
from tests.support.waiting import wait_until

TOPUP = topics.LEDGER_TRANSACTION_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
REQUESTED = topics.PAYMENT_REQUESTED.name
AUDIT = topics.AUDIT_PAYMENT_EVENTS.name


def cloud_event(event_type: str, data: dict[str, object], *, actor: str | None = None) -> bytes:
    event: dict[str, object] = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        # What the platform's own events say: the source proves nothing.
        "source": "/kafka-platform/payments",
        "type": event_type,
        "time": "2026-12-04T10:00:00Z",
        "datacontenttype": "application/json",
        "data": data,
    }
    if actor:
        event["actor"] = actor
    return json.dumps(event).encode()


def reason_is(reason: str, key: str) -> object:
    return lambda r: r.key == key.encode() and r.headers.get("dlq-reason") == reason.encode()


def dead_lettered(collector: Collector, dlq: str, key: str, reason: str, count: int = 1) -> list[Record]:
    return collector.wait_for(dlq, reason_is(reason, key), count=count)  # type: ignore[arg-type]


def processed_payment(merchant: str, amount: str) -> dict[str, object]:
    return {
        **payment_request(merchantId=merchant, amount=amount),
        "status": "captured",
        "processedAt": "2026-12-04T10:00:00Z",
    }


def test_a_forged_topup_claiming_an_operator_is_refused_and_posts_nothing(
    live: Stack, collector: Collector
) -> None:
    client = f"user:{uuid.uuid4().hex[:10]}"
    forged = topup_request(client, "1000000.00")
    produce(live.bootstrap, TOPUP, cloud_event(TOPUP, forged, actor="user:ops"), key=forged["transactionId"])
    [dead] = dead_lettered(collector, topics.LEDGER_DLQ.name, forged["transactionId"], "unauthenticated")
    assert dead.headers["dlq-original-topic"] == TOPUP.encode()

    # The ledger keeps working: a signed request behind it is posted, the forged one never.
    genuine = topup_request(client, "5.00")
    value = cloud_event(TOPUP, genuine)
    produce(live.bootstrap, TOPUP, value, key=genuine["transactionId"], headers=sign(TOPUP, value))
    wait_until(
        lambda: Transaction.objects.filter(pk=genuine["transactionId"]).exists(), what="the genuine topup"
    )
    assert not Transaction.objects.filter(pk=forged["transactionId"]).exists()
    assert balance(client) == Decimal("5.00")


def test_a_forged_payment_processed_credits_no_merchant(live: Stack, collector: Collector) -> None:
    merchant = f"m_{uuid.uuid4().hex[:8]}"
    forged = processed_payment(merchant, "777.00")
    payment_id = str(forged["paymentId"])
    produce(live.bootstrap, PROCESSED, cloud_event(PROCESSED, forged), key=payment_id)
    dead_lettered(collector, topics.PAYMENTS_DLQ.name, payment_id, "unauthenticated")
    assert not Transaction.objects.filter(pk=f"payment:{payment_id}").exists()
    assert balance(f"merchant:{merchant}") == Decimal(0)


def test_a_forged_audit_record_is_not_appended(live: Stack, collector: Collector) -> None:
    subject = f"pay_{uuid.uuid4().hex[:10]}"
    record = {
        "action": "payment.refunded",
        "subjectType": "payment",
        "subjectId": subject,
        "actor": "user:ops",
    }
    value = cloud_event(AUDIT, record)
    produce(live.bootstrap, AUDIT, value, key=subject)
    dead_lettered(collector, topics.AUDIT_DLQ.name, subject, "unauthenticated")
    assert not AuditEvent.objects.filter(event_id=json.loads(value)["id"]).exists()


def test_a_record_typed_as_another_topic_is_a_schema_violation(live: Stack, collector: Collector) -> None:
    # A payment-processed sent to the open payment-requested topic must not be routed by its type.
    merchant = f"m_{uuid.uuid4().hex[:8]}"
    forged = processed_payment(merchant, "777.00")
    payment_id = str(forged["paymentId"])
    produce(live.bootstrap, REQUESTED, cloud_event(PROCESSED, forged), key=payment_id)
    dead_lettered(collector, topics.PAYMENTS_DLQ.name, payment_id, "schema_violation")
    assert not Payment.objects.filter(payment_id=payment_id).exists()
    assert balance(f"merchant:{merchant}") == Decimal(0)


def test_an_unsigned_payment_request_acts_as_its_integration_whatever_it_claims(
    live: Stack, collector: Collector
) -> None:
    data = payment_request()
    produce(live.bootstrap, REQUESTED, cloud_event(REQUESTED, data, actor="user:ops"), key=data["paymentId"])
    [processed] = collector.wait_for(PROCESSED, subject_is(data["paymentId"]))
    # What the platform publishes carries its signature, for this topic and this value.
    event = processed.json()
    assert signing.verify(
        topic=PROCESSED,
        event_id=event["id"],
        event_type=event["type"],
        value=processed.value or b"",
        header=processed.headers[SIGNATURE_HEADER].decode(),
    )
    requested = PaymentTransition.objects.get(payment__payment_id=data["paymentId"], to_status="requested")
    assert requested.actor == f"kafka:{REQUESTED}"


def test_a_signed_record_altered_after_signing_is_refused(live: Stack, collector: Collector) -> None:
    client = f"user:{uuid.uuid4().hex[:10]}"
    data = topup_request(client, "1.00")
    value = cloud_event(TOPUP, data)
    headers = sign(TOPUP, value)
    altered = value.replace(b'"1.00"', b'"1000.00"')
    assert altered != value
    produce(live.bootstrap, TOPUP, altered, key=data["transactionId"], headers=headers)
    dead_lettered(collector, topics.LEDGER_DLQ.name, data["transactionId"], "unauthenticated")
    assert not Transaction.objects.filter(pk=data["transactionId"]).exists()


def test_a_signed_record_copied_to_another_topic_is_refused(live: Stack, collector: Collector) -> None:
    # Signed for payment-processed (say, read off that topic), produced to the ledger's input.
    data = topup_request(f"user:{uuid.uuid4().hex[:10]}", "1.00")
    value = cloud_event(TOPUP, data)
    produce(live.bootstrap, TOPUP, value, key=data["transactionId"], headers=sign(PROCESSED, value))
    dead_lettered(collector, topics.LEDGER_DLQ.name, data["transactionId"], "unauthenticated")


def test_a_replayed_unauthenticated_record_is_refused_again_and_the_replay_audited(
    live: Stack, collector: Collector
) -> None:
    client = f"user:{uuid.uuid4().hex[:10]}"
    forged = topup_request(client, "1000000.00")
    key = forged["transactionId"]
    produce(live.bootstrap, TOPUP, cloud_event(TOPUP, forged, actor="user:ops"), key=key)
    dead_lettered(collector, topics.LEDGER_DLQ.name, key, "unauthenticated")
    dead = wait_until(lambda: DeadLetter.objects.filter(original_topic=TOPUP, key=key.encode()).first())

    replay(dead, actor="user:night-operator")

    [original, replayed] = collector.wait_for(TOPUP, subject_is(key), count=2)
    assert replayed.value == original.value and SIGNATURE_HEADER not in replayed.headers
    dead_lettered(collector, topics.LEDGER_DLQ.name, key, "unauthenticated", count=2)
    assert not Transaction.objects.filter(pk=key).exists()
    subject = f"{TOPUP}:{dead.original_partition}:{dead.original_offset}"
    audited = wait_until(
        lambda: AuditEvent.objects.filter(action=REPLAYED, subject_id=subject).first(),
        what="the replay's audit record",
    )
    assert audited.actor == "user:night-operator"


# --- a deployment that trusts the ledger's input topic, mid key rotation --------------------------

ROTATED_KEY = "a-rotated-platform-event-key"


@pytest.fixture
def rotated_and_trusting(live: Stack) -> Iterator[Stack]:
    """The stack with a new PLATFORM_EVENT_KEY (the development key now the previous one) and
    KAFKA_TRUSTED_INPUTS naming both gated input topics."""
    live.reconfigure(
        {
            "PLATFORM_EVENT_KEY": ROTATED_KEY,
            "PLATFORM_EVENT_KEY_PREVIOUS": settings.PLATFORM_EVENT_KEY,
            "KAFKA_TRUSTED_INPUTS": f"{TOPUP},{topics.NOTIFICATION_REQUESTED.name}",
        }
    )
    try:
        yield live
    finally:
        live.reconfigure({})


@pytest.mark.slow  # restarts the whole stack twice (with the rotated key, then back)
def test_trusted_and_rotated(rotated_and_trusting: Stack, collector: Collector) -> None:
    stack = rotated_and_trusting
    # An unsigned topup on a trusted gated topic is posted, as the integration, not as it claims.
    client = f"user:{uuid.uuid4().hex[:10]}"
    topup = topup_request(client, "12.00")
    produce(stack.bootstrap, TOPUP, cloud_event(TOPUP, topup, actor="user:ops"), key=topup["transactionId"])
    posted = wait_until(
        lambda: Transaction.objects.filter(pk=topup["transactionId"]).first(), what="the topup"
    )
    assert posted.actor == f"kafka:{TOPUP}"
    assert balance(client) == Decimal("12.00")

    # Trusted is not the platform: an integration may not claim one of the platform's ids.
    squat = transfer_request(client, "merchant:m-x", "0.01", transactionId=f"refund:{uuid.uuid4().hex}")
    produce(stack.bootstrap, TOPUP, cloud_event(TOPUP, squat), key=squat["transactionId"])
    [dead] = collector.wait_for(topics.LEDGER_DLQ.name, subject_is(squat["transactionId"]))
    assert dead.headers["dlq-reason"] == b"reserved_id"
    assert not Transaction.objects.filter(pk=squat["transactionId"]).exists()

    # A record signed with the previous key (this test process still holds it) verifies.
    merchant = f"m_{uuid.uuid4().hex[:8]}"
    processed = processed_payment(merchant, "3.00")
    value = cloud_event(PROCESSED, processed)
    produce(
        stack.bootstrap, PROCESSED, value, key=str(processed["paymentId"]), headers=sign(PROCESSED, value)
    )
    wait_until(lambda: balance(f"merchant:{merchant}") == Decimal("3.00"), what="the merchant's credit")

    # A trusted notification request is the integration's own, whoever it names as requester.
    ops = make_api_user(f"ops_{uuid.uuid4().hex[:8]}")
    notification_id = f"ntf_{uuid.uuid4().hex[:10]}"
    request = {
        "notificationId": notification_id,
        "channel": "email",
        "recipient": "a@example.com",
        "subject": "hi",
        "body": "there",
        "requestedBy": f"user:{ops.username}",
    }
    name = topics.NOTIFICATION_REQUESTED.name
    produce(
        stack.bootstrap, name, cloud_event(name, request, actor=f"user:{ops.username}"), key=notification_id
    )
    queued = wait_until(
        lambda: Notification.objects.filter(notification_id=notification_id).first(), what="the notification"
    )
    assert (queued.requested_by, queued.owner_id) == (f"kafka:{name}", None)
