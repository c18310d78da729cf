"""Webhooks through the real stack to a real HTTP server that verifies Standard Webhooks signatures:
retries from the database schedule, a receiver down for good, endpoint disabling, private targets."""

from __future__ import annotations

import uuid

import pytest

from bridge import topics
from notifications.models import DeliveryAttempt, Notification, WebhookEndpoint
from tests.conftest import Stack
from tests.notifications.conftest import DISABLE_AFTER, PLATFORM_SECRET, RETRY_SCHEDULE
from tests.support.builders import notification_request, structured
from tests.support.kafka import Collector, produce, subject_is
from tests.support.receivers import HttpReceiver, verify_standard_webhook
from tests.support.signing import sign

REQUESTED = topics.NOTIFICATION_REQUESTED.name
SENT = topics.NOTIFICATION_SENT.name
FAILED = topics.NOTIFICATION_FAILED.name


def request_webhook(stack: Stack, url: str, **overrides: object) -> dict[str, object]:
    data = notification_request(channel="webhook", recipient=url, **overrides)
    # As the platform's domains ask notifications: signed (the topic is gated).
    value = structured(REQUESTED, data)
    produce(
        stack.bootstrap, REQUESTED, value, key=str(data["notificationId"]), headers=sign(REQUESTED, value)
    )
    return data


def hook_name() -> str:
    return "h" + uuid.uuid4().hex[:10]


def test_signed_webhook_is_verified_by_the_receiver(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    name = hook_name()
    data = request_webhook(nlive, http_receiver.hook_url(name), template="payment_refunded")
    [delivery] = http_receiver.wait_for(name)
    payload = verify_standard_webhook(secret=PLATFORM_SECRET, headers=delivery.headers, body=delivery.body)
    assert delivery.headers["webhook-id"] == data["notificationId"]
    assert delivery.headers["content-type"] == "application/json"
    assert payload["type"] == "payment_refunded"
    assert payload["data"] == {
        "paymentId": "pay_1",
        "amount": "25.00",
        "currency": "EUR",
        "reason": "requested_by_customer",
    }
    [record] = collector.wait_for(SENT, subject_is(data["notificationId"]))
    assert record.json()["data"]["providerMessageId"] == data["notificationId"]
    with pytest.raises(AssertionError):
        verify_standard_webhook(secret=PLATFORM_SECRET, headers=delivery.headers, body=delivery.body + b" ")


def test_receiver_failing_then_recovering_is_retried_on_the_schedule(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    name = hook_name()
    http_receiver.script(name, [500, 503], then=200)
    data = request_webhook(nlive, http_receiver.hook_url(name))

    [record] = collector.wait_for(SENT, subject_is(data["notificationId"]), timeout_s=60)
    assert record.json()["data"]["attempts"] == 3
    deliveries = http_receiver.received(name)
    assert [d.status for d in deliveries] == [500, 503, 200]
    # Every retry is the same message: same webhook-id, same body, freshly signed.
    assert {d.headers["webhook-id"] for d in deliveries} == {data["notificationId"]}
    assert len({d.body for d in deliveries}) == 1
    for d in deliveries:
        verify_standard_webhook(secret=PLATFORM_SECRET, headers=d.headers, body=d.body)
    gaps = [b.received_at - a.received_at for a, b in zip(deliveries, deliveries[1:], strict=False)]
    assert all(gap >= RETRY_SCHEDULE[0] * 0.9 for gap in gaps), gaps

    attempts = list(DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"]))
    assert [(a.number, a.status, a.status_code) for a in attempts] == [
        (1, "failed", 500),
        (2, "failed", 503),
        (3, "sent", 200),
    ]
    assert all(a.latency_ms is not None and a.latency_ms > 0 for a in attempts)
    endpoint = Notification.objects.get(notification_id=data["notificationId"]).webhook_endpoint
    assert endpoint is not None and endpoint.is_active and endpoint.consecutive_failures == 0


@pytest.mark.slow
def test_receiver_down_for_good_fails_after_the_schedule_and_disables_the_endpoint(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    name = hook_name()
    http_receiver.script(name, [], then=500)
    url = http_receiver.hook_url(name)
    attempts_each = len(RETRY_SCHEDULE) + 1

    first = request_webhook(nlive, url)
    [record] = collector.wait_for(FAILED, subject_is(first["notificationId"]), timeout_s=60)
    failed = record.json()["data"]
    assert failed["reason"] == "retries_exhausted" and failed["attempts"] == attempts_each
    assert len(http_receiver.received(name)) == attempts_each
    endpoint = WebhookEndpoint.objects.get(url=url)
    assert endpoint.is_active and endpoint.consecutive_failures == 1

    # DISABLE_AFTER notifications in a row given up on: the endpoint is disabled.
    for _ in range(DISABLE_AFTER - 1):
        more = request_webhook(nlive, url)
        collector.wait_for(FAILED, subject_is(more["notificationId"]), timeout_s=60)
    endpoint.refresh_from_db()
    assert not endpoint.is_active and endpoint.disabled_at is not None
    assert "in a row" in endpoint.disabled_reason
    collector.wait_for(
        topics.AUDIT_NOTIFICATION_EVENTS.name,
        lambda r: (
            r.json()["data"]["action"] == "webhook_endpoint.disabled"
            and r.json()["subject"] == str(endpoint.id)
        ),
    )

    received = len(http_receiver.received(name))
    last = request_webhook(nlive, url)
    [record] = collector.wait_for(FAILED, subject_is(last["notificationId"]))
    assert record.json()["data"]["reason"] == "endpoint_disabled"
    assert record.json()["data"]["attempts"] == 0
    assert len(http_receiver.received(name)) == received


def test_gone_receiver_disables_its_endpoint_at_once(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    name = hook_name()
    http_receiver.script(name, [410])
    data = request_webhook(nlive, http_receiver.hook_url(name))
    [record] = collector.wait_for(FAILED, subject_is(data["notificationId"]))
    assert record.json()["data"]["reason"] == "endpoint_disabled" and record.json()["data"]["attempts"] == 1
    assert not WebhookEndpoint.objects.get(url=http_receiver.hook_url(name)).is_active


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.2:{port}/hooks/{name}",  # loopback, but not the allowlisted 127.0.0.1
        "http://10.255.255.1/hooks/{name}",  # private
        "http://169.254.169.254/latest/meta-data/",  # link-local: cloud metadata
        "http://[::1]:{port}/hooks/{name}",  # IPv6 loopback
    ],
)
def test_private_and_loopback_targets_are_refused(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector, target: str
) -> None:
    name = hook_name()
    data = request_webhook(nlive, target.format(port=http_receiver.port, name=name))
    [record] = collector.wait_for(FAILED, subject_is(data["notificationId"]))
    assert record.json()["data"]["reason"] == "forbidden_target"
    assert http_receiver.received(name) == []
    [attempt] = DeliveryAttempt.objects.filter(notification__notification_id=data["notificationId"])
    assert "not public" in attempt.error
