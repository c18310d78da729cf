"""A payment's outcome notifies its customer by email, SMS (Twilio API), push (Expo API) and webhook,
and the registered webhook endpoints that want it; a redelivered outcome event notifies once."""

from __future__ import annotations

import uuid

import pytest

from bridge import topics
from bridge.models import OutboxEvent
from notifications import services
from notifications.models import Notification
from notifications.services.queueing import INBOX_CONSUMER as NOTIFICATIONS_INBOX
from tests.conftest import Stack
from tests.notifications.conftest import PLATFORM_SECRET, SMS_FROM, TWILIO_SID, TWILIO_TOKEN
from tests.support.builders import payment_request, structured
from tests.support.inbox import redelivery_refused
from tests.support.kafka import Collector, produce, subject_is
from tests.support.receivers import (
    HttpReceiver,
    SmtpReceiver,
    basic_auth,
    twilio_form,
    verify_standard_webhook,
)
from tests.support.waiting import wait_until

PAYMENT_REQUESTED = topics.PAYMENT_REQUESTED.name
PROCESSED = topics.PAYMENT_PROCESSED.name
SENT = topics.NOTIFICATION_SENT.name


def test_captured_payment_notifies_every_channel_of_its_customer(
    nlive: Stack, smtp: SmtpReceiver, http_receiver: HttpReceiver, collector: Collector
) -> None:
    run = uuid.uuid4().hex[:8]
    customer_hook, merchant_hook, other_hook = f"cust{run}", f"merch{run}", f"other{run}"
    # The platform's own endpoints (no owner): they hear of payments that came through Kafka.
    merchant = services.webhook_endpoint_register(
        url=http_receiver.hook_url(merchant_hook), event_types=["payment_captured"], owner=None, actor="test"
    )
    services.webhook_endpoint_register(
        url=http_receiver.hook_url(other_hook), event_types=["payment_failed"], owner=None, actor="test"
    )
    phone = "+1555" + str(uuid.uuid4().int)[:7]
    push_token = f"ExponentPushToken[{run}]"
    data = payment_request(
        customer={
            "email": f"{run}@example.com",
            "phone": phone,
            "pushToken": push_token,
            "webhookUrl": http_receiver.hook_url(customer_hook),
            "locale": "fr",
        },
        metadata={"orderId": "o-1", "description": "Un livre"},
    )
    payment_id = data["paymentId"]
    produce(nlive.bootstrap, PAYMENT_REQUESTED, structured(PAYMENT_REQUESTED, data), key=payment_id)

    [mail] = smtp.wait_for(f"{run}@example.com")
    assert mail.message["Subject"] == "Paiement reçu : 99.99 USD"
    assert "pour Un livre" in mail.text() and "<strong>99.99 USD</strong>" in mail.html()

    [sms] = wait_until(
        lambda: [r for r in http_receiver.received(HttpReceiver.TWILIO) if twilio_form(r).get("To") == phone],
        what="the SMS at the Twilio API",
    )
    assert twilio_form(sms) == {
        "To": phone,
        "From": SMS_FROM,
        "Body": f"Paiement de 99.99 USD reçu. Réf. {payment_id}.",
    }
    assert basic_auth(sms) == (TWILIO_SID, TWILIO_TOKEN)
    assert sms.path == f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"

    [push] = wait_until(
        lambda: [r for r in http_receiver.received(HttpReceiver.EXPO) if r.json()["to"] == push_token],
        what="the push at the Expo API",
    )
    assert push.json()["title"] == "Paiement reçu" and push.json()["body"] == "99.99 USD payés pour Un livre."

    [to_customer] = http_receiver.wait_for(customer_hook)
    payload = verify_standard_webhook(
        secret=PLATFORM_SECRET, headers=to_customer.headers, body=to_customer.body
    )
    assert to_customer.headers["webhook-id"] == f"payment:{payment_id}:captured:webhook"
    assert payload["type"] == "payment_captured"
    assert payload["data"]["paymentId"] == payment_id and payload["data"]["amount"] == "99.99"

    [to_merchant] = http_receiver.wait_for(merchant_hook)
    verify_standard_webhook(secret=merchant.secret, headers=to_merchant.headers, body=to_merchant.body)
    with pytest.raises(AssertionError):  # the endpoint's own secret, not the platform's
        verify_standard_webhook(secret=PLATFORM_SECRET, headers=to_merchant.headers, body=to_merchant.body)

    expected = {
        f"payment:{payment_id}:captured:{suffix}"
        for suffix in ("email", "sms", "push", "webhook", f"webhook:{merchant.id}")
    }
    for notification_id in expected:
        collector.wait_for(SENT, subject_is(notification_id))
    assert (
        set(
            Notification.objects.filter(notification_id__startswith=f"payment:{payment_id}:").values_list(
                "notification_id", flat=True
            )
        )
        == expected
    )
    assert http_receiver.received(other_hook) == []

    # The payment-processed event delivered again: nothing is sent twice.
    [processed] = collector.wait_for(PROCESSED, subject_is(payment_id))
    since = nlive.worker.log_size()
    produce(
        nlive.bootstrap,
        PROCESSED,
        processed.value or b"",
        key=payment_id,
        headers=list(processed.headers.items()),
    )
    # Proof that the copy was consumed, before asserting that it had no effect: the inbox refused it.
    wait_until(
        redelivery_refused(
            nlive.worker, consumer=NOTIFICATIONS_INBOX, event_id=processed.json()["id"], since=since
        ),
        what="the worker refused the redelivered payment-processed event",
    )
    assert len(smtp.to(f"{run}@example.com")) == 1
    assert len(http_receiver.received(customer_hook)) == 1 and len(http_receiver.received(merchant_hook)) == 1
    for notification_id in expected:
        assert OutboxEvent.objects.filter(topic=SENT, key=notification_id).count() == 1
        assert len(collector.matching(SENT, subject_is(notification_id))) == 1


def test_declined_payment_sends_the_failure_template(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    email = f"{uuid.uuid4().hex[:8]}@example.com"
    data = payment_request(
        paymentMethod={"type": "card", "token": "tok_chargeDeclined"}, customer={"email": email}
    )
    produce(nlive.bootstrap, PAYMENT_REQUESTED, structured(PAYMENT_REQUESTED, data), key=data["paymentId"])
    [mail] = smtp.wait_for(email)
    assert mail.message["Subject"] == "Payment not completed: 99.99 USD"
    assert "could not be completed: The card was declined." in mail.text()
    collector.wait_for(SENT, subject_is(f"payment:{data['paymentId']}:failed:email"))
