"""The auditors' API: who may read the log, filters, cursor pages, CSV/JSONL exports,
verification, and working compliance alerts."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection
from rest_framework.test import APIClient

from audit import chain, services
from audit.models import AlertStatus, AuditEvent, ComplianceAlert
from bridge import topics
from bridge.codec import loads
from bridge.models import OutboxEvent
from tests.audit.support import audit_envelope, token_client

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/audit/events/"
VERIFY = "/api/v1/audit/verify/"
ALERTS = "/api/v1/compliance/alerts/"
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture
def logged() -> list[AuditEvent]:
    """Five records of two subjects across two topics, a minute apart."""
    tag = uuid.uuid4().hex[:6]
    envelopes = [
        audit_envelope("payment.captured", subject_id=f"pay_a_{tag}", occurred_at=T0),
        audit_envelope(
            "payment.refunded",
            subject_id=f"pay_a_{tag}",
            occurred_at=T0 + timedelta(minutes=1),
            details={"amount": Decimal("12.50"), "note": '=HYPERLINK("http://evil")'},
        ),
        audit_envelope("payment.captured", subject_id=f"pay_b_{tag}", occurred_at=T0 + timedelta(minutes=2)),
        audit_envelope(
            "notification.sent",
            subject_id=f"ntf_{tag}",
            subject_type="notification",
            occurred_at=T0 + timedelta(minutes=3),
            topic=topics.AUDIT_NOTIFICATION_EVENTS,
            actor="system:notifications-worker",
        ),
        audit_envelope("payment.captured", subject_id=f"pay_c_{tag}", occurred_at=T0 + timedelta(minutes=4)),
    ]
    for envelope in envelopes:
        services.audit_event_record(event=envelope)
    return list(AuditEvent.objects.filter(event_id__in=[e.id for e in envelopes]).order_by("sequence"))


def test_only_auditors_read_the_audit_log(
    auditor: User, operator: User, client_user: User, logged: list[AuditEvent]
) -> None:
    assert token_client(auditor).get(EVENTS).status_code == 200
    assert token_client(operator).get(EVENTS).status_code == 403
    assert token_client(client_user).get(EVENTS).status_code == 403
    assert APIClient().get(EVENTS).status_code == 401
    for path in (VERIFY, ALERTS):
        assert token_client(auditor).get(path).status_code == 200
        assert token_client(operator).get(path).status_code == 403
        assert token_client(client_user).get(path).status_code == 403


def test_records_are_their_chain_documents_with_exact_decimals(
    auditor: User, logged: list[AuditEvent]
) -> None:
    response = token_client(auditor).get(
        EVENTS, {"subject": logged[1].subject_id, "action": "payment.refunded"}
    )
    assert response.status_code == 200
    assert b'"amount":12.50' in response.content  # not 12.5: the digits as recorded
    [document] = loads(response.content)["results"]
    assert document == logged[1].document() | {"data": document["data"]}
    content = {k: document[k] for k in chain.CONTENT_FIELDS}
    assert chain.link_hash(document["prevHash"], content) == document["hash"]


def test_filters_by_type_subject_actor_source_and_time(auditor: User, logged: list[AuditEvent]) -> None:
    api = token_client(auditor)

    def sequences(**params: str) -> list[int]:
        response = api.get(EVENTS, params)
        assert response.status_code == 200, response.content
        return [r["sequence"] for r in loads(response.content)["results"]]

    ours = {r.sequence for r in logged}
    assert sequences(subject=logged[0].subject_id) == [logged[1].sequence, logged[0].sequence]
    assert sequences(type="audit.notification-events", subject=logged[3].subject_id) == [logged[3].sequence]
    assert sequences(actor="system:notifications-worker", subject=logged[3].subject_id) == [
        logged[3].sequence
    ]
    assert sequences(source="/kafka-platform/audit", subject=logged[3].subject_id) == [logged[3].sequence]
    in_range = sequences(
        since=(T0 + timedelta(minutes=1)).isoformat(), until=(T0 + timedelta(minutes=3)).isoformat()
    )
    assert ours.intersection(in_range) == {logged[1].sequence, logged[2].sequence}
    assert api.get(EVENTS, {"since": "yesterday"}).status_code == 400


def test_cursor_pages_walk_the_log_newest_first(auditor: User, logged: list[AuditEvent]) -> None:
    api = token_client(auditor)
    seen: list[int] = []
    url: str | None = f"{EVENTS}?limit=2&since={T0.isoformat().replace('+00:00', 'Z')}"
    while url:
        page = loads(api.get(url).content)
        assert len(page["results"]) <= 2
        seen += [r["sequence"] for r in page["results"] if r["eventId"] in {e.event_id for e in logged}]
        url = page["next"]
    assert seen == sorted((r.sequence for r in logged), reverse=True)


def test_csv_export_streams_every_match_oldest_first_and_defuses_formulas(
    auditor: User, logged: list[AuditEvent]
) -> None:
    response = token_client(auditor).get(EVENTS, {"format": "csv", "subject": logged[0].subject_id})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [int(r["sequence"]) for r in rows] == [logged[0].sequence, logged[1].sequence]
    assert rows[1]["hash"] == logged[1].hash and rows[1]["action"] == "payment.refunded"
    assert not rows[1]["data"].startswith("=") and "HYPERLINK" in rows[1]["data"]
    # The same through the Accept header.
    by_accept = token_client(auditor).get(EVENTS, {"subject": logged[0].subject_id}, HTTP_ACCEPT="text/csv")
    assert by_accept.status_code == 200 and by_accept["Content-Type"].startswith("text/csv")


def test_jsonl_export_is_verifiable_by_anyone(auditor: User, logged: list[AuditEvent]) -> None:
    response = token_client(auditor).get(EVENTS, {"format": "jsonl"})
    assert response.status_code == 200 and response["Content-Type"].startswith("application/jsonl")
    documents = [loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert [d["eventId"] for d in documents if d["eventId"] in {e.event_id for e in logged}] == [
        e.event_id for e in logged
    ]
    prev = documents[0]["prevHash"]
    for document in documents:
        content = {k: document[k] for k in chain.CONTENT_FIELDS}
        assert document["prevHash"] == prev
        prev = chain.link_hash(prev, content)
        assert prev == document["hash"]


def test_exports_are_refused_to_operators_too(operator: User, logged: list[AuditEvent]) -> None:
    assert token_client(operator).get(EVENTS, {"format": "csv"}).status_code == 403
    assert token_client(operator).get(EVENTS, {"format": "jsonl"}).status_code == 403


def test_verify_endpoint_reports_intact_then_the_first_bad_record(
    auditor: User, logged: list[AuditEvent]
) -> None:
    api = token_client(auditor)
    body = loads(api.get(VERIFY).content)
    assert (
        body["intact"] is True
        and body["firstBadRecord"] is None
        and body["lastSequence"] >= logged[-1].sequence
    )
    with connection.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET subject_id = 'x' WHERE id = %s", [logged[2].pk])
        cursor.execute("SET session_replication_role = DEFAULT")
    body = loads(api.get(VERIFY).content)
    assert body["intact"] is False
    assert body["firstBadRecord"]["sequence"] == logged[2].sequence
    assert body["firstBadRecord"]["eventId"] == logged[2].event_id
    assert body["firstBadRecord"]["reason"] == "content_altered"


@pytest.fixture
def alert() -> ComplianceAlert:
    raised = services.compliance_alert_raise(
        rule="high_value_transaction",
        severity="medium",
        subject="payment:pay_big",
        details={"amount": "50000.00"},
    )
    assert raised is not None
    return raised


def test_auditors_acknowledge_then_resolve_an_alert(
    auditor: User, make_user: Callable[..., User], alert: ComplianceAlert
) -> None:
    from core import roles

    colleague = make_user("cora_auditor", role=roles.AUDITORS)
    api = token_client(auditor)
    listed = loads(api.get(ALERTS, {"status": "open"}).content)["results"]
    assert str(alert.alert_id) in [a["alertId"] for a in listed]

    url = f"{ALERTS}{alert.alert_id}/"
    acknowledged = api.post(
        f"{url}acknowledge/", {"assignee": colleague.username, "note": "looking"}, format="json"
    )
    assert acknowledged.status_code == 200, acknowledged.content
    body = loads(acknowledged.content)
    assert body["status"] == "acknowledged" and body["assignee"] == "cora_auditor"
    assert body["acknowledgedBy"] == "user:ada_auditor" and "ada_auditor: looking" in body["notes"]
    # Acknowledging again changes nothing.
    assert loads(api.post(f"{url}acknowledge/", {}, format="json").content)["status"] == "acknowledged"

    resolved = api.post(f"{url}resolve/", {"note": "customer verified"}, format="json")
    assert resolved.status_code == 200
    assert loads(resolved.content)["status"] == "resolved"
    assert api.post(f"{url}acknowledge/", {}, format="json").status_code == 409
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by == "user:ada_auditor"
    audited = [
        loads(bytes(e.value))["data"]["action"]
        for e in OutboxEvent.objects.filter(
            topic=topics.AUDIT_COMPLIANCE_EVENTS.name, key=str(alert.alert_id)
        )
    ]
    assert audited == [
        "compliance_alert.raised",
        "compliance_alert.acknowledged",
        "compliance_alert.resolved",
    ]


def test_alert_assignee_must_be_someone_who_works_alerts(
    auditor: User, operator: User, alert: ComplianceAlert
) -> None:
    response = token_client(auditor).post(
        f"{ALERTS}{alert.alert_id}/acknowledge/", {"assignee": operator.username}, format="json"
    )
    assert response.status_code == 400 and "assignee" in json.loads(response.content)["errors"]


def test_operators_and_clients_cannot_work_alerts(
    operator: User, client_user: User, alert: ComplianceAlert
) -> None:
    for user in (operator, client_user):
        response = token_client(user).post(f"{ALERTS}{alert.alert_id}/acknowledge/", {}, format="json")
        assert response.status_code == 403
    alert.refresh_from_db()
    assert alert.status == AlertStatus.OPEN


def test_a_failed_api_authentication_is_recorded_for_the_audit_log(logged: list[AuditEvent]) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    assert api.get(EVENTS).status_code == 401
    [event] = [loads(bytes(e.value)) for e in OutboxEvent.objects.filter(topic=topics.AUDIT_AUTH_EVENTS.name)]
    assert event["data"]["action"] == "auth.failed"
    assert (event["data"]["subjectType"], event["data"]["subjectId"]) == ("client", "127.0.0.1")
    assert event["data"]["details"]["channel"] == "api" and event["data"]["details"]["path"] == EVENTS
    # No credentials at all is not a failed authentication.
    assert APIClient().get(EVENTS).status_code == 401
    assert OutboxEvent.objects.filter(topic=topics.AUDIT_AUTH_EVENTS.name).count() == 1
