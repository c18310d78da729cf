"""Roles in the admin: the groups and their permissions, the read-only audit log, auditors working
alerts, operators kept out of the audit domain; failed admin logins are recorded."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client

from audit import services
from audit.models import AlertStatus, AuditEvent, ComplianceAlert
from bridge import topics
from bridge.codec import loads
from bridge.models import OutboxEvent
from core import roles
from tests.audit.support import audit_envelope

pytestmark = pytest.mark.django_db


def browser(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def row() -> AuditEvent:
    envelope = audit_envelope("payment.captured")
    services.audit_event_record(event=envelope)
    return AuditEvent.objects.get(event_id=envelope.id)


@pytest.fixture
def alert() -> ComplianceAlert:
    raised = services.compliance_alert_raise(
        rule="velocity", severity="medium", subject="user:u_fast", details={"payments": 12}
    )
    assert raised is not None
    return raised


def codenames(role: str) -> set[str]:
    group = Group.objects.get(name=role)
    return {
        f"{p.content_type.app_label}.{p.codename}" for p in group.permissions.select_related("content_type")
    }


def test_migrations_create_both_groups_with_their_permissions() -> None:
    auditors, operators = codenames(roles.AUDITORS), codenames(roles.OPERATORS)
    assert {
        "audit.view_auditevent",
        "audit.view_chaincheckpoint",
        "audit.view_compliancealert",
        "audit.change_compliancealert",
        "payments.view_payment",
    } <= auditors
    assert not {"audit.change_auditevent", "audit.delete_auditevent", "audit.add_auditevent"} & auditors
    assert {
        "payments.view_payment",
        "payments.change_payment",
        "bridge.view_deadletter",
        "bridge.change_deadletter",
        "django_celery_beat.change_periodictask",
    } <= operators
    assert not {p for p in operators if p.startswith("audit.")}


def test_migrate_grants_again_what_a_group_is_missing() -> None:
    group = Group.objects.get(name=roles.AUDITORS)
    group.permissions.remove(Permission.objects.get(codename="view_auditevent"))
    call_command("migrate", verbosity=0)
    assert "audit.view_auditevent" in codenames(roles.AUDITORS)


def test_the_audit_log_is_read_only_in_the_admin_for_everyone(
    auditor: User, make_user: Callable[..., User], row: AuditEvent
) -> None:
    superuser = make_user("root", is_superuser=True)
    for user in (auditor, superuser):
        client = browser(user)
        assert client.get("/admin/audit/auditevent/").status_code == 200
        page = client.get(f"/admin/audit/auditevent/{row.pk}/change/")
        assert page.status_code == 200 and b"Save" not in page.content
        assert client.post(f"/admin/audit/auditevent/{row.pk}/change/", {"actor": "x"}).status_code == 403
        assert client.get("/admin/audit/auditevent/add/").status_code == 403
        assert client.post(f"/admin/audit/auditevent/{row.pk}/delete/", {"post": "yes"}).status_code == 403
        assert client.get("/admin/audit/chaincheckpoint/add/").status_code == 403
    assert AuditEvent.objects.get(pk=row.pk).actor == row.actor


def test_operators_see_their_screens_but_not_the_audit_domain(operator: User, row: AuditEvent) -> None:
    client = browser(operator)
    for path in (
        "/admin/payments/payment/",
        "/admin/bridge/deadletter/",
        "/admin/django_celery_beat/periodictask/",
    ):
        assert client.get(path).status_code == 200, path
    for path in (
        "/admin/audit/auditevent/",
        "/admin/audit/compliancealert/",
        "/admin/audit/chaincheckpoint/",
    ):
        assert client.get(path).status_code == 403, path


def test_auditors_read_domain_records_but_not_operations(auditor: User) -> None:
    client = browser(auditor)
    assert client.get("/admin/payments/payment/").status_code == 200
    assert client.get("/admin/bridge/deadletter/").status_code == 403
    assert client.get("/admin/django_celery_beat/periodictask/").status_code == 403


def test_auditors_acknowledge_resolve_and_annotate_alerts_in_the_admin(
    auditor: User, make_user: Callable[..., User], alert: ComplianceAlert
) -> None:
    colleague = make_user("cora_auditor", role=roles.AUDITORS)
    client = browser(auditor)
    changelist = "/admin/audit/compliancealert/"
    assert client.get(changelist).status_code == 200
    response = client.post(changelist, {"action": "acknowledge_selected", "_selected_action": [alert.pk]})
    assert response.status_code == 302
    alert.refresh_from_db()
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.assignee == auditor

    response = client.post(
        f"{changelist}{alert.pk}/change/", {"assignee": colleague.pk, "new_note": "handing over"}
    )
    assert response.status_code == 302, response.content[:2000]
    alert.refresh_from_db()
    assert alert.assignee == colleague and "ada_auditor: handing over" in alert.notes
    assert alert.status == AlertStatus.ACKNOWLEDGED and alert.rule == "velocity"

    client.post(changelist, {"action": "resolve_selected", "_selected_action": [alert.pk]})
    alert.refresh_from_db()
    assert alert.status == AlertStatus.RESOLVED and alert.resolved_by == "user:ada_auditor"
    assert client.get(f"{changelist}add/").status_code == 403
    assert client.post(f"{changelist}{alert.pk}/delete/", {"post": "yes"}).status_code == 403


def test_a_failed_admin_login_is_recorded_for_the_audit_log(auditor: User) -> None:
    response = Client().post(
        "/admin/login/?next=/admin/", {"username": "ada_auditor", "password": "wrong"}, REMOTE_ADDR="10.1.2.3"
    )
    assert response.status_code == 200  # the form again, with its error
    [event] = [loads(bytes(e.value)) for e in OutboxEvent.objects.filter(topic=topics.AUDIT_AUTH_EVENTS.name)]
    data = event["data"]
    assert (data["action"], data["subjectType"], data["subjectId"]) == ("auth.failed", "user", "ada_auditor")
    assert data["details"] == {
        "channel": "login",
        "remoteAddr": "10.1.2.3",
        "path": "/admin/login/",
        "reason": "invalid_credentials",
    }
    assert (
        event["subject"] == "ada_auditor"
        and "password" not in bytes(OutboxEvent.objects.get().value).decode()
    )
