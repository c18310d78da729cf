"""Compliance rules at and below their thresholds, on real PostgreSQL; alerts stored, published
through the outbox and counted; the service other domains call to raise an alert."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from django.test import override_settings

from audit import services
from audit.events import AuditAction
from audit.models import AlertStatus, ComplianceAlert
from bridge import topics
from bridge.codec import loads
from bridge.models import OutboxEvent
from core import metrics
from tests.audit.support import audit_envelope, payment_details

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def new_user() -> str:
    return f"user_{uuid.uuid4().hex[:8]}"


def request_payment(*, user_id: str, amount: str = "25.00", currency: str = "USD", at: datetime = T0) -> str:
    payment_id = f"pay_{uuid.uuid4().hex[:10]}"
    services.audit_event_record(
        event=audit_envelope(
            "payment.requested",
            subject_id=payment_id,
            details=payment_details(amount=amount, currency=currency, user_id=user_id),
            occurred_at=at,
        )
    )
    return payment_id


def fail_login(username: str, *, at: datetime = T0) -> None:
    services.audit_event_record(
        event=audit_envelope(
            AuditAction.AUTH_FAILED,
            subject_type="user",
            subject_id=username,
            details={"channel": "login", "remoteAddr": "10.0.0.7"},
            occurred_at=at,
            topic=topics.AUDIT_AUTH_EVENTS,
            actor="anonymous",
        )
    )


def alerts(rule: str, subject: str) -> list[ComplianceAlert]:
    return list(ComplianceAlert.objects.filter(rule=rule, subject=subject))


def violations(rule: str) -> float:
    return metrics.COMPLIANCE_VIOLATIONS.labels(rule=rule)._value.get()


@override_settings(COMPLIANCE_HIGH_VALUE_THRESHOLD="10000")
def test_high_value_fires_at_the_threshold_and_not_below(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    user = new_user()
    below = request_payment(user_id=user, amount="9999.99")
    before = violations("high_value_transaction")
    with django_capture_on_commit_callbacks(execute=True):
        at = request_payment(user_id=user, amount="10000.00")
    yen = request_payment(user_id=user, amount="2000000", currency="JPY")
    assert alerts("high_value_transaction", f"payment:{below}") == []
    [alert] = alerts("high_value_transaction", f"payment:{at}")
    assert alert.status == AlertStatus.OPEN and alert.severity == "medium"
    assert alert.details["amount"] == "10000.00" and alert.details["userId"] == user
    assert alerts("high_value_transaction", f"payment:{yen}")  # the threshold is in the payment's currency
    assert violations("high_value_transaction") == before + 1

    [published] = [
        loads(bytes(e.value))
        for e in OutboxEvent.objects.filter(
            topic=topics.AUDIT_COMPLIANCE_ALERTS.name, key=str(alert.alert_id)
        )
    ]
    assert published["type"] == "audit.compliance-alerts" and published["subject"] == str(alert.alert_id)
    data = published["data"]
    assert (data["alertId"], data["rule"], data["severity"]) == (
        str(alert.alert_id),
        "high_value_transaction",
        "medium",
    )
    assert data["subject"] == f"payment:{at}" and data["details"]["amount"] == "10000.00"
    assert OutboxEvent.objects.filter(
        topic=topics.AUDIT_COMPLIANCE_EVENTS.name, key=str(alert.alert_id)
    ).exists(), "raising an alert is itself audited"


@override_settings(COMPLIANCE_VELOCITY_MAX_PAYMENTS=3, COMPLIANCE_VELOCITY_WINDOW_SECONDS=600)
def test_velocity_fires_on_more_than_n_payments_in_the_window_once() -> None:
    user, steady = new_user(), new_user()
    for i in range(3):
        request_payment(user_id=user, at=T0 + timedelta(minutes=i))
    # Three in ten minutes is the limit, not over it; nor are payments spread beyond the window.
    assert alerts("velocity", f"user:{user}") == []
    for i in range(6):
        request_payment(user_id=steady, at=T0 + timedelta(minutes=11 * i))
    assert alerts("velocity", f"user:{steady}") == []

    request_payment(user_id=user, at=T0 + timedelta(minutes=4))
    [alert] = alerts("velocity", f"user:{user}")
    assert alert.details["payments"] == 4 and alert.details["limit"] == 3
    # Still within the window: no second alert for the same burst.
    request_payment(user_id=user, at=T0 + timedelta(minutes=5))
    assert len(alerts("velocity", f"user:{user}")) == 1
    # A new burst a window later raises again.
    for i in range(4):
        request_payment(user_id=user, at=T0 + timedelta(minutes=30 + i))
    assert len(alerts("velocity", f"user:{user}")) == 2


@override_settings(COMPLIANCE_AUTH_FAILURE_THRESHOLD=3, COMPLIANCE_AUTH_FAILURE_WINDOW_SECONDS=300)
def test_repeated_auth_failure_fires_at_n_failures_in_the_window() -> None:
    name, other = f"eve_{uuid.uuid4().hex[:6]}", f"bob_{uuid.uuid4().hex[:6]}"
    fail_login(name)
    fail_login(name, at=T0 + timedelta(minutes=1))
    fail_login(other, at=T0 + timedelta(minutes=1))
    fail_login(name, at=T0 - timedelta(minutes=10))  # outside the window
    assert alerts("repeated_auth_failure", f"user:{name}") == []
    fail_login(name, at=T0 + timedelta(minutes=2))
    [alert] = alerts("repeated_auth_failure", f"user:{name}")
    assert alert.severity == "high" and alert.details["failures"] == 3
    assert alerts("repeated_auth_failure", f"user:{other}") == []


@override_settings(COMPLIANCE_AUTH_FAILURE_THRESHOLD=3, COMPLIANCE_AUTH_FAILURE_WINDOW_SECONDS=300)
def test_a_burst_logged_out_of_order_still_raises_repeated_auth_failure() -> None:
    # Two batches of one partition in two worker processes: the later failures are logged first.
    name = f"eve_{uuid.uuid4().hex[:6]}"
    fail_login(name, at=T0 + timedelta(minutes=2))
    fail_login(name, at=T0 + timedelta(minutes=1))
    assert alerts("repeated_auth_failure", f"user:{name}") == []
    fail_login(name, at=T0)

    [alert] = alerts("repeated_auth_failure", f"user:{name}")
    assert alert.details["failures"] == 3
    # Spread wider than the window, three failures raise nothing, in whatever order they come.
    spread = f"eve_{uuid.uuid4().hex[:6]}"
    for minutes in (8, 4, 0):
        fail_login(spread, at=T0 + timedelta(minutes=minutes))
    assert alerts("repeated_auth_failure", f"user:{spread}") == []


@override_settings(COMPLIANCE_VELOCITY_MAX_PAYMENTS=2, COMPLIANCE_VELOCITY_WINDOW_SECONDS=600)
def test_payments_logged_out_of_order_still_trip_velocity() -> None:
    # A user's payments are keyed apart, so they reach the log in any order.
    user = new_user()
    for minutes in (2, 1):
        request_payment(user_id=user, at=T0 + timedelta(minutes=minutes))
    assert alerts("velocity", f"user:{user}") == []
    request_payment(user_id=user, at=T0)

    [alert] = alerts("velocity", f"user:{user}")
    assert alert.details["payments"] == 3


@override_settings(
    COMPLIANCE_HIGH_VALUE_THRESHOLD="10000",
    COMPLIANCE_VELOCITY_MAX_PAYMENTS=3,
    COMPLIANCE_VELOCITY_WINDOW_SECONDS=600,
)
def test_one_batch_of_several_users_trips_velocity_for_the_busy_one_only(
    django_assert_max_num_queries,  # type: ignore[no-untyped-def]
) -> None:
    busy, calm, other = new_user(), new_user(), new_user()
    request_payment(user_id=busy, at=T0 - timedelta(minutes=1))  # already in the log
    batch = [
        audit_envelope(
            "payment.requested",
            details=payment_details(amount="25.00", currency="USD", user_id=user),
            occurred_at=T0 + timedelta(seconds=i),
        )
        for i, user in enumerate([busy, calm, busy, other, busy, calm, *(new_user() for _ in range(24))])
    ]
    # The rules read the batch's users once, not once per record: the statements do not grow
    # with the batch (lock, head, seen ids, insert, velocity, high value none; the alert's writes).
    with django_assert_max_num_queries(20):
        assert services.audit_events_record(events=batch) == len(batch)
    [alert] = alerts("velocity", f"user:{busy}")
    assert alert.details["payments"] == 4 and alert.details["limit"] == 3
    assert alerts("velocity", f"user:{calm}") == alerts("velocity", f"user:{other}") == []


@override_settings(COMPLIANCE_HIGH_VALUE_THRESHOLD="100")
def test_a_redelivered_audit_event_raises_no_second_alert() -> None:
    envelope = audit_envelope(
        "payment.requested", details=payment_details(amount="500.00", user_id=new_user()), occurred_at=T0
    )
    assert services.audit_event_record(event=envelope)
    assert not services.audit_event_record(event=envelope)
    assert ComplianceAlert.objects.filter(source_event_id=envelope.id).count() == 1


@override_settings(COMPLIANCE_RULES=["audit.rules.Velocity"], COMPLIANCE_HIGH_VALUE_THRESHOLD="1")
def test_rules_are_plugged_in_by_settings() -> None:
    payment = request_payment(user_id=new_user(), amount="5000.00")
    assert alerts("high_value_transaction", f"payment:{payment}") == []


def test_other_domains_raise_alerts_through_the_service(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    before = violations("ledger_imbalance")
    with django_capture_on_commit_callbacks(execute=True):
        alert = services.compliance_alert_raise(
            rule="ledger_imbalance",
            severity="critical",
            subject="currency:USD",
            details={"debits": "100.00", "credits": "99.99"},
            dedupe_key="ledger_imbalance:2026-11-23:USD",
        )
    again = services.compliance_alert_raise(
        rule="ledger_imbalance",
        severity="critical",
        subject="currency:USD",
        details={},
        dedupe_key="ledger_imbalance:2026-11-23:USD",
    )
    assert alert is not None and again is None
    assert alert.status == AlertStatus.OPEN and alert.details == {"debits": "100.00", "credits": "99.99"}
    assert violations("ledger_imbalance") == before + 1
    assert OutboxEvent.objects.filter(
        topic=topics.AUDIT_COMPLIANCE_ALERTS.name, key=str(alert.alert_id)
    ).exists()
    with pytest.raises(ValueError, match="severity"):
        services.compliance_alert_raise(rule="ledger_imbalance", severity="urgent", subject="x", details={})


def test_audit_events_are_counted_on_commit(django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
    before = metrics.AUDIT_EVENTS._value.get()
    envelope = audit_envelope("payment.captured")
    with django_capture_on_commit_callbacks(execute=True):
        services.audit_event_record(event=envelope)
        services.audit_event_record(event=envelope)
    assert metrics.AUDIT_EVENTS._value.get() == before + 1
