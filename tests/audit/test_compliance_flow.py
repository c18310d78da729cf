"""Compliance rules over the real stack: each rule raises an alert on audit.compliance-alerts
from events that travelled through Kafka, the bridge and the worker, and not below its threshold.
Thresholds are the defaults (high value 10000, velocity more than 10 per hour, 5 failed
authentications in 15 minutes)."""

from __future__ import annotations

import uuid

import pytest
from django.conf import settings
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditEvent, ComplianceAlert
from bridge import topics
from tests.conftest import Stack
from tests.support.builders import payment_request, structured
from tests.support.kafka import Collector, Record, produce, subject_is
from tests.support.signing import sign
from tests.support.waiting import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ALERTS = topics.AUDIT_COMPLIANCE_ALERTS.name
REQUESTED = topics.PAYMENT_REQUESTED.name


def alert_for(rule: str, subject: str) -> object:
    def matches(record: Record) -> bool:
        data = record.json()["data"]
        return data["rule"] == rule and data["subject"] == subject

    return matches


def alert_audited(record: Record) -> None:
    """Wait for the alert's own audit record: the last step of the pipeline, so the test ends
    with nothing of it still in flight."""
    stored(1, subject_id=record.json()["data"]["alertId"], action="compliance_alert.raised")


def stored(count: int, **filters: str) -> None:
    """Wait until `count` audit records matching `filters` are in the log (rules have run then)."""
    wait_until(
        lambda: AuditEvent.objects.filter(**filters).count() >= count, what=f"{count} records {filters}"
    )


def test_a_high_value_payment_raises_an_alert_and_a_smaller_one_does_not(
    live: Stack, collector: Collector
) -> None:
    assert settings.COMPLIANCE_HIGH_VALUE_THRESHOLD == "10000"
    big = payment_request(amount="10000.00", userId=f"u_{uuid.uuid4().hex[:6]}")
    small = payment_request(amount="9999.99", userId=f"u_{uuid.uuid4().hex[:6]}")
    for data in (small, big):
        produce(live.bootstrap, REQUESTED, structured(REQUESTED, data), key=data["paymentId"])

    [record] = collector.wait_for(ALERTS, alert_for("high_value_transaction", f"payment:{big['paymentId']}"))
    event = record.json()
    assert event["source"] == "/kafka-platform/audit" and record.key == event["data"]["alertId"].encode()
    assert event["data"]["severity"] == "medium" and event["data"]["details"]["amount"] == "10000.00"
    alert = ComplianceAlert.objects.get(alert_id=event["data"]["alertId"])
    assert alert.status == "open" and alert.correlation_id

    stored(1, subject_id=small["paymentId"], action="payment.requested")
    assert not ComplianceAlert.objects.filter(subject=f"payment:{small['paymentId']}").exists()
    # The raised alert is itself recorded in the audit log, through audit.compliance-events.
    alert_audited(record)


def audit_payment_requested(live: Stack, user_id: str) -> None:
    """A payments audit record as the payments domain publishes it."""
    payment_id = f"pay_{uuid.uuid4().hex[:10]}"
    data = {
        "action": "payment.requested",
        "subjectType": "payment",
        "subjectId": payment_id,
        "actor": "system:payments-worker",
        "details": {"toStatus": "requested", "amount": "20.00", "currency": "USD", "userId": user_id},
    }
    value = structured(topics.AUDIT_PAYMENT_EVENTS.name, data)
    produce(
        live.bootstrap,
        topics.AUDIT_PAYMENT_EVENTS.name,
        value,
        headers=sign(topics.AUDIT_PAYMENT_EVENTS.name, value),
    )


def test_more_than_n_payments_of_a_user_in_the_window_raise_velocity(
    live: Stack, collector: Collector
) -> None:
    limit = settings.COMPLIANCE_VELOCITY_MAX_PAYMENTS
    fast, steady = f"u_fast_{uuid.uuid4().hex[:6]}", f"u_steady_{uuid.uuid4().hex[:6]}"
    for _ in range(limit):
        audit_payment_requested(live, steady)
    for _ in range(limit + 1):
        audit_payment_requested(live, fast)

    [record] = collector.wait_for(ALERTS, alert_for("velocity", f"user:{fast}"))
    assert record.json()["data"]["details"]["payments"] == limit + 1
    stored(limit, action="payment.requested", data__details__userId=steady)
    assert not ComplianceAlert.objects.filter(rule="velocity", subject=f"user:{steady}").exists()
    alert_audited(record)


def test_repeated_failed_admin_logins_raise_repeated_auth_failure(live: Stack, collector: Collector) -> None:
    threshold = settings.COMPLIANCE_AUTH_FAILURE_THRESHOLD
    target, other = f"eve_{uuid.uuid4().hex[:6]}", f"bob_{uuid.uuid4().hex[:6]}"
    browser = Client()
    for _ in range(threshold):
        browser.post("/admin/login/", {"username": target, "password": "guess"})
    for _ in range(threshold - 1):
        browser.post("/admin/login/", {"username": other, "password": "guess"})

    [record] = collector.wait_for(ALERTS, alert_for("repeated_auth_failure", f"user:{target}"))
    details = record.json()["data"]["details"]
    assert details["failures"] == threshold and details["lastChannel"] == "login"
    stored(threshold - 1, action="auth.failed", subject_id=other)
    assert not ComplianceAlert.objects.filter(subject=f"user:{other}").exists()
    alert_audited(record)


def test_repeated_failed_api_authentication_raises_repeated_auth_failure(
    live: Stack, collector: Collector
) -> None:
    api = APIClient(REMOTE_ADDR="203.0.113.9")
    api.credentials(HTTP_AUTHORIZATION="Token stolen-or-guessed")
    for _ in range(settings.COMPLIANCE_AUTH_FAILURE_THRESHOLD):
        assert api.get("/api/v1/audit/events/").status_code == 401
    [record] = collector.wait_for(ALERTS, alert_for("repeated_auth_failure", "client:203.0.113.9"))
    assert record.json()["data"]["details"]["lastChannel"] == "api"
    assert subject_is(record.json()["data"]["alertId"])(record)
    alert_audited(record)
