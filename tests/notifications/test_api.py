"""The notifications API: POST a notification (202) that goes through Kafka and is delivered, follow
its status with attempts, redeliver it, and register webhook endpoints."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bridge import topics
from core.roles import OPERATORS, sync_role_groups
from notifications.models import Notification, WebhookEndpoint
from tests.conftest import Stack
from tests.notifications.conftest import PLATFORM_SECRET
from tests.support.kafka import Collector, subject_is
from tests.support.receivers import HttpReceiver, verify_standard_webhook
from tests.support.waiting import wait_until


@pytest.fixture
def api() -> APIClient:
    """An operator: requesting and redelivering notifications need the role's permissions."""
    user = get_user_model().objects.create_user(username=f"ops-{uuid.uuid4().hex[:6]}", password="x")
    sync_role_groups(group_model=Group, permission_model=Permission)
    user.groups.add(Group.objects.get(name=OPERATORS))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_post_notification_then_status_with_attempts_then_redeliver(
    nlive: Stack, api: APIClient, http_receiver: HttpReceiver, collector: Collector
) -> None:
    name = "api" + uuid.uuid4().hex[:8]
    notification_id = f"api-{uuid.uuid4().hex[:8]}"
    answer = api.post(
        "/api/v1/notifications/",
        {
            "notificationId": notification_id,
            "channel": "webhook",
            "recipient": http_receiver.hook_url(name),
            "template": "order_shipped",
            "context": {"orderId": "o-9"},
        },
        format="json",
    )
    assert answer.status_code == 202, answer.content
    assert answer.json()["notificationId"] == notification_id
    assert answer["Location"].endswith(f"/api/v1/notifications/{notification_id}/")
    [published] = collector.wait_for(topics.NOTIFICATION_REQUESTED.name, subject_is(notification_id))
    assert published.json()["data"]["template"] == "order_shipped"

    [delivery] = http_receiver.wait_for(name)
    # Signed with the requester's own secret for that URL, not the platform's.
    endpoint = wait_until(
        lambda: Notification.objects.filter(notification_id=notification_id).first(), what="the row"
    ).webhook_endpoint
    assert endpoint is not None
    assert delivery.json() == verify_standard_webhook(
        secret=endpoint.secret, headers=delivery.headers, body=delivery.body
    )
    with pytest.raises(AssertionError):
        verify_standard_webhook(secret=PLATFORM_SECRET, headers=delivery.headers, body=delivery.body)
    detail = wait_until(
        lambda: (
            (r := api.get(f"/api/v1/notifications/{notification_id}/")).status_code == 200
            and r.json()["status"] == "sent"
            and r.json()
        ),
        what="the notification sent",
    )
    assert detail["channel"] == "webhook" and detail["attempts"] == 1
    [attempt] = detail["deliveryAttempts"]
    assert attempt["status"] == "sent" and attempt["statusCode"] == 200 and attempt["latencyMs"] > 0

    listed = api.get("/api/v1/notifications/", {"status": "sent", "channel": "webhook"}).json()
    assert notification_id in [n["notificationId"] for n in listed["results"]]

    redelivered = api.post(f"/api/v1/notifications/{notification_id}/redeliver/")
    assert redelivered.status_code == 202 and redelivered.json()["status"] == "queued"
    second = http_receiver.wait_for(name, count=2)[1]
    assert second.headers["webhook-id"] == notification_id
    wait_until(
        lambda: api.get(f"/api/v1/notifications/{notification_id}/").json()["attempts"] == 2,
        what="the redelivery recorded",
    )
    assert collector.wait_for(topics.NOTIFICATION_SENT.name, subject_is(notification_id), count=2)


def test_post_notification_validation_and_authentication(nlive: Stack, api: APIClient) -> None:
    missing = api.post(
        "/api/v1/notifications/", {"channel": "email", "recipient": "a@example.com"}, format="json"
    )
    assert missing.status_code == 400
    assert APIClient().get("/api/v1/notifications/").status_code == 401
    assert api.get("/api/v1/notifications/nope/").status_code == 404


def test_webhook_endpoint_registration_and_reenabling(
    nlive: Stack, api: APIClient, http_receiver: HttpReceiver
) -> None:
    created = api.post(
        "/api/v1/webhook-endpoints/",
        {"url": http_receiver.hook_url("reg"), "eventTypes": ["payment_captured"], "description": "shop"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["kind"] == "registered" and body["isActive"]
    endpoint_id = body["id"]
    assert endpoint_id in [e["id"] for e in api.get("/api/v1/webhook-endpoints/").json()["results"]]

    private = api.post(
        "/api/v1/webhook-endpoints/", {"url": "http://10.1.2.3/hook", "eventTypes": ["*"]}, format="json"
    )
    assert private.status_code == 400 and "not public" in private.json()["errors"]["url"][0]

    disabled = api.patch(f"/api/v1/webhook-endpoints/{endpoint_id}/", {"isActive": False}, format="json")
    assert disabled.status_code == 200 and not disabled.json()["isActive"]
    WebhookEndpoint.objects.filter(pk=endpoint_id).update(consecutive_failures=7)
    enabled = api.patch(f"/api/v1/webhook-endpoints/{endpoint_id}/", {"isActive": True}, format="json")
    assert enabled.json()["isActive"] and enabled.json()["consecutiveFailures"] == 0
    assert api.delete(f"/api/v1/webhook-endpoints/{endpoint_id}/").status_code == 204
    assert not WebhookEndpoint.objects.filter(pk=endpoint_id).exists()
