"""Who may see and do what in notifications, proven the way the attacks were made: two plain API
clients A and B (in neither group, token auth) against the real stack.

A client's webhook endpoints, their secrets and its notifications are its own; only A's endpoints
hear of A's payments; a customer's webhookUrl is signed with a secret of A's, never with the
platform's; requesting notifications needs `notifications.add_notification`; system ids cannot be
claimed; context numbers keep their digits; IPv6 forms of private addresses are refused; a
receiver's answer is shown to the endpoint's owner only."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from bridge import topics
from core.roles import AUDITORS, OPERATORS, sync_role_groups
from notifications.models import EndpointKind, Notification, WebhookEndpoint
from tests.conftest import Stack
from tests.notifications.conftest import PLATFORM_SECRET
from tests.support.builders import payment_request
from tests.support.kafka import Collector, subject_is
from tests.support.receivers import BadSignature, HttpReceiver, verify_standard_webhook
from tests.support.waiting import wait_until

SENT = topics.NOTIFICATION_SENT.name
FAILED = topics.NOTIFICATION_FAILED.name


@dataclass
class Client:
    user: Any
    api: APIClient


def api_user(name: str, *, group: str | None = None, perms: tuple[str, ...] = ()) -> Client:
    """An API user with a real token; `group` one of the platform's roles, `perms` direct grants."""
    user = get_user_model().objects.create_user(f"{name}-{uuid.uuid4().hex[:6]}")
    if group is not None:
        # The roles' grants, as `migrate` makes them (a test's closing flush may have removed them).
        sync_role_groups(group_model=Group, permission_model=Permission)
        user.groups.add(Group.objects.get(name=group))
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return Client(user, api)


def hook_name() -> str:
    return "az" + uuid.uuid4().hex[:10]


def register(client: Client, url: str, event_types: list[str]) -> dict[str, Any]:
    answer = client.api.post(
        "/api/v1/webhook-endpoints/", {"url": url, "eventTypes": event_types}, format="json"
    )
    assert answer.status_code == 201, answer.content
    return answer.json()


def pay(client: Client, **overrides: Any) -> str:
    """A payment requested by `client` through the API, as a plain client does."""
    body = payment_request(**overrides)
    answer = client.api.post(
        "/api/v1/payments/",
        json.dumps(body),
        content_type="application/json",
        HTTP_IDEMPOTENCY_KEY=uuid.uuid4().hex,
    )
    assert answer.status_code == 202, answer.content
    return str(body["paymentId"])


def signed_with(secret: str, delivery: Any) -> bool:
    try:
        verify_standard_webhook(secret=secret, headers=delivery.headers, body=delivery.body)
    except BadSignature:
        return False
    return True


def test_another_client_cannot_list_read_change_rotate_or_delete_an_endpoint(
    nlive: Stack, http_receiver: HttpReceiver
) -> None:
    a, b = api_user("a"), api_user("b")
    created = register(a, http_receiver.hook_url(hook_name()), ["payment_captured"])
    endpoint_id, secret = created["id"], created["secret"]
    assert secret.startswith("whsec_") and created["owner"] == a.user.username

    listed_by_b = b.api.get("/api/v1/webhook-endpoints/")
    assert listed_by_b.status_code == 200
    assert endpoint_id not in [e["id"] for e in listed_by_b.json()["results"]]
    assert secret not in listed_by_b.content.decode()
    url = f"/api/v1/webhook-endpoints/{endpoint_id}/"
    assert b.api.get(url).status_code == 404
    hijack = {"url": http_receiver.hook_url("attacker"), "eventTypes": ["*"]}
    assert b.api.patch(url, hijack, format="json").status_code == 404
    assert b.api.post(f"{url}rotate-secret/").status_code == 404
    assert b.api.delete(url).status_code == 404

    endpoint = WebhookEndpoint.objects.get(pk=endpoint_id)
    assert endpoint.url == created["url"] and endpoint.event_types == ["payment_captured"]
    assert endpoint.secret == secret and endpoint.owner_id == a.user.pk
    # A's own view of it never shows the secret again.
    assert "secret" not in a.api.get(url).json()
    assert all("secret" not in e for e in a.api.get("/api/v1/webhook-endpoints/").json()["results"])


def test_only_the_owners_endpoints_hear_of_its_payment_and_rotation_changes_the_signing_secret(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    a, b = api_user("a"), api_user("b")
    a_hook, b_hook = hook_name(), hook_name()
    a_endpoint = register(a, http_receiver.hook_url(a_hook), ["payment_captured"])
    register(b, http_receiver.hook_url(b_hook), ["*"])

    first = pay(a)
    [delivery] = http_receiver.wait_for(a_hook)
    assert json.loads(delivery.body)["data"]["paymentId"] == first
    assert signed_with(a_endpoint["secret"], delivery) and not signed_with(PLATFORM_SECRET, delivery)
    # B's "*" endpoint: its notification would be queued with A's, in the same transaction.
    collector.wait_for(SENT, subject_is(f"payment:{first}:captured:webhook:{a_endpoint['id']}"))
    assert http_receiver.received(b_hook) == []
    assert not Notification.objects.filter(
        notification_id__startswith=f"payment:{first}:", owner__isnull=False
    ).exclude(owner=a.user)

    rotated = a.api.post(f"/api/v1/webhook-endpoints/{a_endpoint['id']}/rotate-secret/")
    assert rotated.status_code == 200
    new_secret = rotated.json()["secret"]
    assert new_secret.startswith("whsec_") and new_secret != a_endpoint["secret"]
    assert "secret" not in a.api.get(f"/api/v1/webhook-endpoints/{a_endpoint['id']}/").json()

    second = pay(a)
    later = http_receiver.wait_for(a_hook, count=2)[1]
    assert json.loads(later.body)["data"]["paymentId"] == second
    assert signed_with(new_secret, later) and not signed_with(a_endpoint["secret"], later)
    collector.wait_for(SENT, subject_is(f"payment:{second}:captured:webhook:{a_endpoint['id']}"))
    assert http_receiver.received(b_hook) == []


def test_a_customers_webhook_url_is_signed_with_a_secret_of_the_paying_client(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    a, b = api_user("a"), api_user("b")
    hook = hook_name()
    url = http_receiver.hook_url(hook)
    first = pay(a, customer={"webhookUrl": url})
    [delivery] = http_receiver.wait_for(hook)
    assert not signed_with(PLATFORM_SECRET, delivery)  # a client could forge those

    # The customer's URL is one of A's endpoints (kind recipient), invisible to B.
    [row] = [e for e in a.api.get("/api/v1/webhook-endpoints/").json()["results"] if e["url"] == url]
    assert row["kind"] == EndpointKind.RECIPIENT and "secret" not in row
    assert signed_with(WebhookEndpoint.objects.get(pk=row["id"]).secret, delivery)
    assert row["id"] not in [e["id"] for e in b.api.get("/api/v1/webhook-endpoints/").json()["results"]]
    assert b.api.post(f"/api/v1/webhook-endpoints/{row['id']}/rotate-secret/").status_code == 404

    # A learns the secret by rotating it; the next delivery to the customer verifies with it.
    secret = a.api.post(f"/api/v1/webhook-endpoints/{row['id']}/rotate-secret/").json()["secret"]
    collector.wait_for(SENT, subject_is(f"payment:{first}:captured:webhook"))
    second = pay(a, customer={"webhookUrl": url})
    later = http_receiver.wait_for(hook, count=2)[1]
    assert json.loads(later.body)["data"]["paymentId"] == second
    assert signed_with(secret, later) and not signed_with(PLATFORM_SECRET, later)


def test_another_client_cannot_read_a_notification(nlive: Stack, collector: Collector) -> None:
    a, b = api_user("a"), api_user("b")
    payment_id = pay(a, customer={"email": f"{uuid.uuid4().hex[:8]}@example.com"})
    notification_id = f"payment:{payment_id}:captured:email"
    collector.wait_for(SENT, subject_is(notification_id))

    url = f"/api/v1/notifications/{notification_id}/"
    assert a.api.get(url).status_code == 200
    assert b.api.get(url).status_code == 404
    assert b.api.post(f"{url}redeliver/").status_code == 403
    listed_by_b = b.api.get("/api/v1/notifications/").json()["results"]
    assert notification_id not in [n["notificationId"] for n in listed_by_b]
    assert notification_id in [
        n["notificationId"] for n in a.api.get("/api/v1/notifications/").json()["results"]
    ]

    # Operators and auditors see everyone's, and can ask for one client's.
    for watcher in (api_user("ops", group=OPERATORS), api_user("aud", group=AUDITORS)):
        assert watcher.api.get(url).status_code == 200
        mine = watcher.api.get("/api/v1/notifications/", {"user": a.user.username}).json()["results"]
        assert notification_id in [n["notificationId"] for n in mine]
        others = watcher.api.get("/api/v1/notifications/", {"user": b.user.username}).json()["results"]
        assert others == []


def test_a_client_without_add_notification_cannot_request_one(nlive: Stack) -> None:
    b = api_user("b")
    answer = b.api.post(
        "/api/v1/notifications/",
        {"channel": "email", "recipient": "victim@example.com", "subject": "Hi", "body": "Pay here"},
        format="json",
    )
    assert answer.status_code == 403
    assert answer["Content-Type"] == "application/problem+json"


@pytest.mark.parametrize("prefix", ["payment:", "refund:", "order:"])
def test_system_notification_ids_are_refused_from_the_api(nlive: Stack, prefix: str) -> None:
    operator = api_user("ops", group=OPERATORS)
    notification_id = f"{prefix}pay_squat{uuid.uuid4().hex[:6]}:captured:email"
    answer = operator.api.post(
        "/api/v1/notifications/",
        {"notificationId": notification_id, "channel": "email", "recipient": "x@example.com", "body": "hi"},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    assert answer["Content-Type"] == "application/problem+json"
    assert "notificationId" in answer.json()["errors"]


def test_context_numbers_keep_their_digits_and_a_requested_webhook_is_signed_with_the_requesters_secret(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    service = api_user("svc", perms=("notifications.add_notification",))
    hook = hook_name()
    notification_id = f"ctx-{uuid.uuid4().hex[:8]}"
    # Raw JSON: the number must never pass through a float on its way.
    raw = (
        f'{{"notificationId": "{notification_id}", "channel": "webhook", '
        f'"recipient": "{http_receiver.hook_url(hook)}", "template": "payment_captured", '
        '"context": {"amount": 12345678901234567.89, "nested": {"fee": 0.10}}}'
    )
    answer = service.api.post("/api/v1/notifications/", raw, content_type="application/json")
    assert answer.status_code == 202, answer.content

    [delivery] = http_receiver.wait_for(hook)
    assert b'"amount":12345678901234567.89' in delivery.body.replace(b" ", b"")
    payload = json.loads(delivery.body, parse_float=Decimal)
    assert payload["data"]["amount"] == Decimal("12345678901234567.89")
    assert str(payload["data"]["nested"]["fee"]) == "0.10"
    collector.wait_for(SENT, subject_is(notification_id))
    notification = Notification.objects.get(notification_id=notification_id)
    assert notification.context["amount"] == Decimal("12345678901234567.89")
    assert notification.owner_id == service.user.pk

    # Signed with the requester's own secret for that URL: nobody can mint platform-signed webhooks.
    assert not signed_with(PLATFORM_SECRET, delivery)
    assert notification.webhook_endpoint is not None
    assert notification.webhook_endpoint.owner_id == service.user.pk
    assert signed_with(notification.webhook_endpoint.secret, delivery)
    # The requester is the actor of the audit records, also of the one the worker wrote.
    for action in ("notification.requested", "notification.sent"):
        [record] = collector.wait_for(
            topics.AUDIT_NOTIFICATION_EVENTS.name,
            lambda r, action=action: (
                r.json()["subject"] == notification_id and r.json()["data"]["action"] == action
            ),
        )
        assert record.json()["data"]["actor"] == f"user:{service.user.username}"


@pytest.mark.parametrize(
    "host",
    [
        "[::127.0.0.1]",  # IPv4-compatible loopback
        "[64:ff9b::a9fe:a9fe]",  # NAT64 of 169.254.169.254 (cloud metadata)
        "[2002:a9fe:a9fe::]",  # 6to4 of 169.254.169.254
        "[2001:0:4136:e378:8000:63bf:3fff:fdd2]",  # Teredo, client 192.0.2.45 (reserved)
    ],
)
def test_ipv6_forms_of_private_addresses_are_refused(nlive: Stack, host: str) -> None:
    a = api_user("a")
    answer = a.api.post(
        "/api/v1/webhook-endpoints/", {"url": f"http://{host}/hook", "eventTypes": ["*"]}, format="json"
    )
    assert answer.status_code == 400, answer.content
    assert "not public" in answer.json()["errors"]["url"][0]
    assert not WebhookEndpoint.objects.filter(owner=a.user).exists()


def test_a_receivers_answer_is_shown_to_the_endpoints_owner_only(
    nlive: Stack, http_receiver: HttpReceiver, collector: Collector
) -> None:
    a, b = api_user("a"), api_user("b")
    auditor, operator = api_user("aud", group=AUDITORS), api_user("ops", group=OPERATORS)
    hook = hook_name()
    private = f"receiver-private-{uuid.uuid4().hex}"
    http_receiver.script(hook, [], then=500, answer=private)
    endpoint = register(a, http_receiver.hook_url(hook), ["payment_captured"])
    offsets = {p.name: p.log_size() for p in nlive.procs}
    payment_id = pay(a)
    notification_id = f"payment:{payment_id}:captured:webhook:{endpoint['id']}"
    [failed] = collector.wait_for(FAILED, subject_is(notification_id), timeout_s=60)

    url = f"/api/v1/notifications/{notification_id}/"
    attempts = a.api.get(url).json()["deliveryAttempts"]
    assert attempts and all(attempt["responseBody"] == private for attempt in attempts)
    assert b.api.get(url).status_code == 404
    for watcher in (auditor, operator):  # operators read it in the admin, not through the API
        seen = watcher.api.get(url)
        assert seen.status_code == 200 and private not in seen.content.decode()
        listed = watcher.api.get("/api/v1/notifications/", {"user": a.user.username})
        assert notification_id in listed.content.decode() and private not in listed.content.decode()
    assert private not in (failed.value or b"").decode()
    # Nor in any log line the stack wrote meanwhile.
    wait_until(lambda: Notification.objects.get(notification_id=notification_id).status == "failed")
    for proc in nlive.procs:
        with proc.log_path.open("rb") as log:
            log.seek(offsets[proc.name])
            assert private.encode() not in log.read(), proc.name
