"""Reconciliation recomputes balances from entries; a balance corrupted behind the code's back
raises a `ledger_imbalance` compliance alert through the audit topics, once."""

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone
from prometheus_client import REGISTRY

from audit.models import AuditEvent
from bridge import topics
from bridge.models import OutboxEvent
from ledger import services
from ledger.models import Balance, Reconciliation
from tests.conftest import Stack
from tests.ledger.support import post, topup_request, transfer_request
from tests.support.drained import wait_until_published
from tests.support.kafka import Collector
from tests.support.processes import celery
from tests.support.waiting import wait_until

# Tests here reset the books between them (reconciliation corrupts rows on purpose).
pytestmark = pytest.mark.django_db(transaction=True)

ALERTS = topics.AUDIT_COMPLIANCE_ALERTS.name


def corrupt(statement: str) -> None:
    """Change a balance row with the ledger's triggers switched off for this session (a superuser's
    `session_replication_role = replica`), as a bad restore or a manual fix would."""
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        try:
            cursor.execute(statement)
        finally:
            cursor.execute("SET session_replication_role = DEFAULT")


@pytest.fixture
def books() -> None:
    post(topup_request("user:rec-a", "100.00", transactionId="rec-1"))
    post(transfer_request("user:rec-a", "user:rec-b", "40.00", transactionId="rec-2"))
    post(topup_request("user:rec-a", "5000", currency="JPY", transactionId="rec-3"))


def reconcile_in_worker(stack: Stack) -> None:
    """Run the beat task the way beat does: sent to the real worker's ledger queue."""
    subprocess.run(  # noqa: S603 - our own command
        celery("call", "ledger.reconcile_balances", "--queue", "ledger"),
        env=stack.env,
        check=True,
        capture_output=True,
        timeout=60,
    )


def alerts_for(collector: Collector) -> list[dict]:
    return [
        r.json()["data"]
        for r in collector.matching(ALERTS)
        if r.json()["data"].get("rule") == "ledger_imbalance"
    ]


def test_corrupted_balance_raises_one_ledger_imbalance_alert(
    live: Stack, collector: Collector, books: None
) -> None:
    since = timezone.now()
    reconcile_in_worker(live)
    assert wait_until(lambda: Reconciliation.objects.count() == 1, timeout_s=30)
    clean = Reconciliation.objects.get()
    # At least this test's five balances (a payment from an earlier test may still be posting).
    assert clean.ok and clean.balances_checked >= 5 and not clean.alert_id

    corrupt("UPDATE ledger_balance SET balance = balance + 5 WHERE account_id = 'user:rec-b'")
    reconcile_in_worker(live)

    [record] = collector.wait_for(ALERTS, lambda r: r.json()["data"].get("rule") == "ledger_imbalance")
    alert = record.json()["data"]
    assert alert["severity"] == "critical" and alert["subject"] == "ledger"
    assert alert["details"]["mismatches"] == [
        {
            "accountId": "user:rec-b",
            "currency": "USD",
            "balance": "45.00",
            "expected": "40.00",
            "version": 1,
            "expectedVersion": 1,
        }
    ]
    assert alert["details"]["imbalances"] == [{"currency": "USD", "source": "balances", "imbalance": "5.00"}]
    assert record.key == alert["alertId"].encode()
    run = Reconciliation.objects.get(alert_id=alert["alertId"])
    assert not run.ok
    assert wait_until(
        lambda: AuditEvent.objects.filter(
            action="ledger.imbalance_detected", data__details__alertId=alert["alertId"]
        ).exists(),
        timeout_s=30,
    ), "the audit worker stored the imbalance record from audit.ledger-events"

    # The same discrepancy found again is recorded, not alerted again. The run is recorded in the
    # transaction that would raise its alert: once it is there and the outbox published, a second
    # alert would be on Kafka.
    reconcile_in_worker(live)
    assert wait_until(lambda: Reconciliation.objects.count() == 3, timeout_s=30)
    assert not Reconciliation.objects.order_by("pk").last().alert_id
    wait_until_published(collector, since=since)
    assert len(alerts_for(collector)) == 1


def test_a_version_out_of_step_with_the_entries_is_a_mismatch_too(books: None) -> None:
    corrupt(
        "UPDATE ledger_balance SET version = version + 1 WHERE account_id = 'user:rec-a' AND currency = 'JPY'"
    )
    before = REGISTRY.get_sample_value("compliance_violations_total", {"rule": "ledger_imbalance"}) or 0.0
    run = services.balances_reconcile()
    assert run.mismatches == [
        {
            "accountId": "user:rec-a",
            "currency": "JPY",
            "balance": "5000",
            "expected": "5000",
            "version": 2,
            "expectedVersion": 1,
        }
    ]
    assert run.imbalances == [] and run.alert_id
    assert (
        REGISTRY.get_sample_value("compliance_violations_total", {"rule": "ledger_imbalance"}) == before + 1
    )
    assert OutboxEvent.objects.filter(topic=ALERTS, key=run.alert_id).count() == 1


def test_clean_books_set_the_balance_gauge_and_raise_nothing(books: None) -> None:
    run = services.balances_reconcile()
    assert run.ok and not run.alert_id
    assert not OutboxEvent.objects.filter(topic=ALERTS).exists()
    # What the platform owes its users and merchants, per currency.
    for currency in ("USD", "JPY"):
        owed = sum(
            Balance.objects.filter(currency=currency, account__kind="liability").values_list(
                "balance", flat=True
            )
        )
        assert owed >= (Decimal("100.00") if currency == "USD" else Decimal(5000))
        assert REGISTRY.get_sample_value("ledger_balance_total", {"currency": currency}) == float(owed)


def test_an_imbalance_is_a_compliance_alert_operators_can_work(books: None) -> None:
    """The ledger raises its alert through audit's service: a stored, open ComplianceAlert whose
    event carries status and raisedAt, which an auditor can acknowledge and resolve."""
    from django.contrib.auth import get_user_model

    from audit import services as audit_services
    from audit.models import AlertStatus, ComplianceAlert
    from bridge.codec import loads

    corrupt("UPDATE ledger_balance SET balance = balance + 1 WHERE account_id = 'user:rec-b'")
    run = services.balances_reconcile()

    alert = ComplianceAlert.objects.get(alert_id=run.alert_id)
    assert (alert.rule, alert.severity, alert.subject, alert.status) == (
        "ledger_imbalance",
        "critical",
        "ledger",
        AlertStatus.OPEN,
    )
    assert alert.details["reconciliationId"] == run.pk
    [row] = OutboxEvent.objects.filter(topic=ALERTS, key=run.alert_id)
    data = loads(bytes(row.value))["data"]
    assert data["status"] == "open" and data["raisedAt"] and data["rule"] == "ledger_imbalance"
    assert data["details"]["imbalances"] == [{"currency": "USD", "source": "balances", "imbalance": "1.00"}]

    auditor = get_user_model().objects.create_user("rec-auditor")
    audit_services.compliance_alert_acknowledge(alert_id=run.alert_id, by=auditor)
    resolved = audit_services.compliance_alert_resolve(alert_id=run.alert_id, by=auditor, note="fixed")
    assert resolved.status == AlertStatus.RESOLVED and resolved.resolved_by == "user:rec-auditor"
