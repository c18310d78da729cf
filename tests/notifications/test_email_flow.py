"""Requested email notifications through the real stack to a real SMTP server: templates per locale
with fallback, HTML with a plain-text alternative, refusals, and one delivery per notificationId."""

from __future__ import annotations

from audit.models import AuditEvent, ComplianceAlert
from bridge import topics
from bridge.models import OutboxEvent
from notifications.models import DeliveryAttempt, Notification
from notifications.services.queueing import INBOX_CONSUMER as NOTIFICATIONS_INBOX
from tests.conftest import Stack
from tests.support.builders import notification_request, structured
from tests.support.inbox import redelivery_refused
from tests.support.kafka import Collector, produce, subject_is
from tests.support.receivers import SmtpReceiver
from tests.support.signing import sign
from tests.support.waiting import wait_until

REQUESTED = topics.NOTIFICATION_REQUESTED.name
SENT = topics.NOTIFICATION_SENT.name
FAILED = topics.NOTIFICATION_FAILED.name


def request(stack: Stack, data: dict[str, object], *, event_id: str | None = None) -> None:
    # As the platform's domains ask notifications: signed (the topic is gated).
    value = structured(REQUESTED, data, event_id=event_id)
    produce(
        stack.bootstrap, REQUESTED, value, key=str(data["notificationId"]), headers=sign(REQUESTED, value)
    )


def test_email_rendered_in_the_requested_locale_with_html_alternative(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    data = notification_request(
        locale="fr-CA",
        template="payment_refunded",
        context={"paymentId": "pay_77", "amount": "25.00", "currency": "EUR", "reason": "<b>geste</b>"},
    )
    request(nlive, data)

    [mail] = smtp.wait_for(data["recipient"])
    assert mail.message["Subject"] == "Remboursement : 25.00 EUR"
    assert "25.00 EUR de votre paiement pay_77 ont été remboursés (<b>geste</b>)" in mail.text()
    # The HTML part is autoescaped; the plain-text part is not.
    assert "&lt;b&gt;geste&lt;/b&gt;" in mail.html() and "<b>geste</b>" not in mail.html()
    assert mail.message["From"] == "payments@kafka-platform.test"
    assert mail.message["X-Notification-Id"] == data["notificationId"]

    [record] = collector.wait_for(SENT, subject_is(data["notificationId"]))
    sent = record.json()["data"]
    assert sent["channel"] == "email" and sent["recipient"] == data["recipient"] and sent["attempts"] == 1
    assert sent["providerMessageId"] == mail.message["Message-ID"].strip("<>")

    notification = Notification.objects.get(notification_id=data["notificationId"])
    assert notification.status == "sent" and notification.template_locale == "fr"
    [attempt] = DeliveryAttempt.objects.filter(notification=notification)
    assert attempt.status == "sent" and attempt.provider == "email:smtp" and attempt.latency_ms is not None
    assert attempt.status_code is None or attempt.status_code < 400
    collector.wait_for(topics.AUDIT_NOTIFICATION_EVENTS.name, subject_is(data["notificationId"]))
    wait_until(
        lambda: AuditEvent.objects.filter(
            subject_id=data["notificationId"], action="notification.sent"
        ).exists(),
        what="the audit worker stored notification.sent",
    )


def test_locale_without_template_falls_back_to_english(nlive: Stack, smtp: SmtpReceiver) -> None:
    data = notification_request(locale="es-MX", template="payment_reversed")
    request(nlive, data)
    [mail] = smtp.wait_for(data["recipient"])
    assert mail.message["Subject"] == "Payment reversed: 25.00 EUR"
    assert Notification.objects.get(notification_id=data["notificationId"]).template_locale == "en"


def test_subject_and_body_without_template(nlive: Stack, smtp: SmtpReceiver) -> None:
    data = notification_request(template=None, subject="Hello", body="Plain words.")
    del data["template"]
    request(nlive, data)
    [mail] = smtp.wait_for(data["recipient"])
    assert mail.message["Subject"] == "Hello" and mail.text().strip() == "Plain words."
    assert mail.html() == "" or mail.message.get_body(preferencelist=("html",)) is None


def test_unknown_template_fails_without_sending(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    data = notification_request(template="no_such_template")
    request(nlive, data)
    [record] = collector.wait_for(FAILED, subject_is(data["notificationId"]))
    failed = record.json()["data"]
    assert failed["reason"] == "template_not_found" and failed["attempts"] == 0
    assert smtp.to(data["recipient"]) == []


def test_invalid_address_fails_as_invalid_recipient(nlive: Stack, collector: Collector) -> None:
    data = notification_request(recipient="not-an-address")
    request(nlive, data)
    [record] = collector.wait_for(FAILED, subject_is(data["notificationId"]))
    assert record.json()["data"]["reason"] == "invalid_recipient"


def test_duplicate_notification_is_delivered_once(
    nlive: Stack, smtp: SmtpReceiver, collector: Collector
) -> None:
    data = notification_request()
    event_id = "evt-" + data["notificationId"]
    conflicting_id = "evt-other-" + data["notificationId"]
    since = nlive.worker.log_size()
    request(nlive, data, event_id=event_id)
    request(nlive, data, event_id=event_id)  # the same event redelivered
    # Another event for the same notificationId, asking for something else.
    request(nlive, {**data, "template": "payment_reversed"}, event_id=conflicting_id)
    smtp.wait_for(data["recipient"])
    collector.wait_for(SENT, subject_is(data["notificationId"]))
    # Proof that every copy was consumed, before asserting that only one had an effect: the inbox
    # refused the redelivery, and the other request was refused as a conflicting duplicate.
    wait_until(
        redelivery_refused(nlive.worker, consumer=NOTIFICATIONS_INBOX, event_id=event_id, since=since),
        what=f"the worker refused the redelivered {event_id}",
    )
    wait_until(
        lambda: ComplianceAlert.objects.filter(source_event_id=conflicting_id).exists(),
        what=f"the worker refused {conflicting_id} as a conflicting duplicate",
    )

    assert Notification.objects.filter(notification_id=data["notificationId"]).count() == 1
    assert DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"]).count() == 1
    assert OutboxEvent.objects.filter(topic=SENT, key=data["notificationId"]).count() == 1
    assert len(smtp.to(data["recipient"])) == 1
    collector.poll()
    assert len(collector.matching(SENT, subject_is(data["notificationId"]))) == 1
