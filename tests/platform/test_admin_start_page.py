"""The admin's start page tells operators and auditors what needs attention, with links."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from audit.models import ComplianceAlert
from bridge.models import DeadLetter, OutboxEvent, StuckPartition
from core.roles import AUDITORS, OPERATORS
from tests.support.users import make_api_user


def _browser(role: str) -> Client:
    user = make_api_user(role, role=role)
    user.is_staff = True
    user.save()
    browser = Client()
    browser.force_login(user)
    return browser


def _row(page: str, label: str) -> str:
    at = page.index(label)
    return page[page.rindex("<tr", 0, at) : page.index("</tr>", at)]


@pytest.mark.django_db
def test_the_start_page_counts_what_waits_and_links_to_it() -> None:
    for offset in range(3):
        DeadLetter.objects.create(
            dlq_topic="payments.dlq",
            original_topic="payments.payment-requested",
            original_partition=0,
            original_offset=offset,
            reason="invalid_json",
            error="not JSON",
            failed_at=timezone.now(),
        )
    OutboxEvent.objects.filter(sent_at__isnull=True).delete()
    waiting = OutboxEvent.objects.create(
        event_id=uuid.uuid4(), topic="payments.payment-processed", key="k", event_type="t", value=b"{}"
    )
    OutboxEvent.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(minutes=7))

    StuckPartition.objects.create(
        group="g",
        topic="payments.payment-requested",
        partition=3,
        offset=42,
        error="refused",
        stuck_since=timezone.now(),
        reported_at=timezone.now(),
        reported_by="host:1",
    )

    page = _browser(OPERATORS).get("/admin/").content.decode()
    stuck = _row(page, "Partitions stuck")
    assert "<strong>1</strong>" in stuck and "payments.payment-requested@3:42" in stuck
    assert "Consumer lag" in page
    dead = _row(page, "Dead letters not replayed")
    assert "<strong>3</strong>" in dead and "/admin/bridge/deadletter/?replayed_at__isnull=True" in dead
    outbox = _row(page, "Outbox events not yet published")
    assert "<strong>1</strong>" in outbox and "7\xa0minutes" in outbox
    # Operators do not read compliance alerts; auditors do, and see no dead letters.
    assert "Compliance alerts open" not in page

    ComplianceAlert.objects.create(
        rule="velocity", severity="high", subject="user:x", details={}, observed_at=timezone.now()
    )
    auditor_page = _browser(AUDITORS).get("/admin/").content.decode()
    assert "<strong>1</strong>" in _row(auditor_page, "Compliance alerts open")
    assert "Dead letters not replayed" not in auditor_page
