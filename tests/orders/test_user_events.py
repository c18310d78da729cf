"""The shop's identity events: a welcome email per registration, and registrations and logins
(with their IP address and location) in the audit log."""

from __future__ import annotations

import json
import uuid

from audit.models import AuditEvent
from bridge import topics
from notifications.models import Notification
from tests.conftest import Stack
from tests.orders.support import wait_sent
from tests.support.kafka import Collector, produce, subject_is
from tests.support.waiting import wait_until


def register(stack: Stack, user_id: str) -> str:
    email = f"{user_id}@example.com"
    body = {"userId": user_id, "email": email, "registrationMethod": "email", "isEmailVerified": False}
    produce(stack.bootstrap, topics.USER_REGISTERED.name, json.dumps(body).encode(), key=user_id)
    return email


def test_each_registration_gets_one_welcome_email_and_an_audit_record(live: Stack) -> None:
    first, second = f"u_{uuid.uuid4().hex[:8]}", f"u_{uuid.uuid4().hex[:8]}"
    email = register(live, first)
    register(live, first)  # the same registration delivered again (bare JSON: its id is the userId)
    register(live, second)

    mail = wait_sent(f"user:{first}:welcome:email")
    assert mail.recipient == email and mail.subject == "Welcome!"
    assert wait_sent(f"user:{second}:welcome:email")
    record = wait_until(
        lambda: AuditEvent.objects.filter(subject_id=first, action="user.registered").first(),
        what="the registration in the audit log",
    )
    assert record.actor == f"user:{first}" and record.data["details"]["email"] == email
    assert record.topic == topics.AUDIT_USER_EVENTS.name
    wait_until(lambda: AuditEvent.objects.filter(subject_id=second, action="user.registered").exists())
    assert Notification.objects.filter(notification_id__startswith=f"user:{first}:").count() == 1
    assert AuditEvent.objects.filter(subject_id=first, action="user.registered").count() == 1


def test_a_login_is_in_the_audit_log_with_its_ip_address_and_location(live: Stack) -> None:
    user_id = f"u_{uuid.uuid4().hex[:8]}"
    login = {
        "userId": user_id,
        "loginMethod": "password",
        "ipAddress": "203.0.113.7",
        "location": {"country": "FR", "city": "Lyon"},
    }
    produce(live.bootstrap, topics.USER_LOGIN.name, json.dumps(login).encode(), key=user_id)
    produce(live.bootstrap, topics.USER_LOGIN.name, json.dumps(login).encode(), key=user_id)  # a second login

    records = wait_until(
        lambda: (
            (found := list(AuditEvent.objects.filter(subject_id=user_id, action="user.login")))
            and len(found) == 2
            and found
        ),
        what="both logins in the audit log",
    )
    details = records[0].data["details"]
    assert details["ipAddress"] == "203.0.113.7" and details["location"] == {"country": "FR", "city": "Lyon"}
    assert details["loginMethod"] == "password" and records[0].actor == f"user:{user_id}"
    assert details["reportedBy"] == f"kafka:{topics.USER_LOGIN.name}"


def test_a_malformed_user_event_goes_to_users_dlq(live: Stack, collector: Collector) -> None:
    produce(
        live.bootstrap, topics.USER_LOGIN.name, json.dumps({"ipAddress": "1.2.3.4"}).encode(), key="no-user"
    )
    [record] = collector.wait_for(topics.USERS_DLQ.name, subject_is("no-user"))
    assert record.headers["dlq-reason"] == b"schema_violation"
